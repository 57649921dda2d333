"""Sweeps across worker processes: determinism, failure isolation, the lock, reuse rules."""

import json
import os
import signal
import subprocess
import sys

import pandas as pd
import pytest
from typer.testing import CliRunner

import lossbench
from lossbench.cli import app
from lossbench.sweep import workers
from lossbench.sweep.config import load_experiment
from lossbench.sweep.execute import run_experiment
from lossbench.sweep.store import ResultsDirError

runner = CliRunner()
TIMING = ["wall_time_s", "time_to_target_s", "stack_size"]  # how a run was executed, not what it computed

MIXED = """
name: mixed
dataset: {name: blobs, n_samples: 300, n_classes: 3}
model: {name: mlp, hidden: [16]}
loss: cross_entropy
optimizer: {name: sgd, lr: 0.1}
train: {epochs: 6, batch_size: 32}
seeds: [0, 1]
target: {metric: val_accuracy, value: 0.9}
grid:
  - {optimizer: [{name: adam, lr: 0.01}, {name: rmsprop, lr: 0.01}, {name: momentum, lr: 0.05, nesterov: true}]}
  - {loss: [mse, {name: hinge, margin: 0.5}], optimizer.name: [adagrad]}
"""


def write(tmp_path, text, name="c.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def tables(out):
    runs = pd.read_csv(out / "runs.csv").drop(columns=TIMING, errors="ignore")
    hist = pd.read_csv(out / "history.csv").drop(columns=["elapsed_s"])
    return runs, hist


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_one_worker_and_two_workers_give_identical_tables(tmp_path, monkeypatch, start):
    monkeypatch.setattr(workers, "START", start)  # forked workers on Linux, spawned elsewhere: both alike
    cfg = write(tmp_path, MIXED)
    r1 = lossbench.run(cfg, out=tmp_path / "one", workers=1)
    r2 = lossbench.run(cfg, out=tmp_path / "two", workers=2)
    assert len(r1.runs) == 10 and (r1.runs.status == "ok").all()
    (a, ha), (b, hb) = tables(tmp_path / "one"), tables(tmp_path / "two")
    pd.testing.assert_frame_equal(a, b)  # exact: same floats, same order
    pd.testing.assert_frame_equal(ha, hb)
    assert r1.summary["group"].tolist() == r2.summary["group"].tolist()


@pytest.mark.parametrize("start,stack", [("fork", "off"), ("spawn", "off"), ("fork", "auto")])
def test_raising_diverging_and_killed_runs_fail_alone(tmp_path, monkeypatch, start, stack):
    """Across two worker processes: a run whose data vanished raises, one diverges, and the
    worker training a third is SIGKILLed mid-run; every other run finishes normally. Stacked,
    the kill takes the runs of the victim's stack with it (the unit a worker trains), and
    nothing else: its stackmate diverging goes on being only its own business."""
    monkeypatch.setattr(workers, "START", start)
    keep, vanish = tmp_path / "keep.csv", tmp_path / "vanish.csv"
    rows = "\n".join(f"{i % 7},{(i * 3) % 5},{i % 2}" for i in range(120))
    keep.write_text("a,b,y\n" + rows + "\n")
    vanish.write_text("a,b,y\n" + rows + "\n9,9,1\n")  # other data: the same bytes would be the same runs
    cfg = write(tmp_path, f"""
name: isolation
dataset: {{name: csv, path: {keep}}}
model: {{name: mlp, hidden: [8]}}
loss: cross_entropy
optimizer: {{name: sgd, lr: 0.1}}
train: {{epochs: 300, batch_size: 4}}
grid:
  - {{optimizer.lr: [0.1, 0.05, 0.02, 1.0e+9]}}
  - {{dataset.path: ["{vanish}"]}}
""")
    exp = load_experiment(cfg)  # validation reads both files; the workers read them again
    vanish.unlink()
    victim = exp.runs[1].run_id  # lr 0.05

    def on_event(kind, **info):
        if kind == "epoch" and info["spec"].run_id == victim and info["row"]["epoch"] == 2:
            os.kill(pids[victim], signal.SIGKILL)
        if kind == "run_start":
            pids[info["spec"].run_id] = info["pid"]

    pids = {}
    outcome = run_experiment(exp, tmp_path / "o", on_event, workers=2, stack=stack)
    runs = pd.read_csv(tmp_path / "o" / "runs.csv").set_index("run_id")
    status = {s.run_id: runs.loc[s.run_id, "status"] for s in exp.runs}
    first = "ok" if stack == "off" else "failed"  # lr 0.1 shares the victim's stack of two
    assert list(status.values()) == [first, "failed", "ok", "diverged", "failed"]
    assert outcome.failed == 2 + (stack != "off") and outcome.trained == 5
    assert "killed by SIGKILL" in runs.loc[victim, "error"]
    if stack == "auto":
        assert list(runs.loc[[s.run_id for s in exp.runs[:4]], "stack_size"]) == [2, 2, 2, 2]
    assert "vanish.csv" in runs.loc[exp.runs[4].run_id, "error"]
    # the survivors trained to the end, and the diverged run is not ranked
    assert (runs[runs.status == "ok"].epochs == 300).all()
    summary = lossbench.load(tmp_path / "o").summary
    assert summary.iloc[0]["group"] in ("lr=0.1", "lr=0.02") and summary.iloc[0]["ok"] == 1
    # the exit code says a run failed; --retry-failed trains the failed ones again (the kill is gone)
    vanish.write_text("a,b,y\n" + rows + "\n9,9,1\n")
    r = runner.invoke(app, ["run", str(cfg), "--out", str(tmp_path / "o"), "--retry-failed", "-j", "2"])
    assert r.exit_code == 0, r.output
    failed = outcome.failed
    assert f"{5 - failed} of 5 runs already recorded (skipped); training {failed}" in r.output
    again = pd.read_csv(tmp_path / "o" / "runs.csv").set_index("run_id")
    assert again.loc[victim, "status"] == "ok" and again.loc[exp.runs[4].run_id, "status"] == "ok"
    pd.testing.assert_series_equal(again.loc[exp.runs[2].run_id].drop(TIMING, errors="ignore"),
                                   runs.loc[exp.runs[2].run_id].drop(TIMING, errors="ignore"))


def test_exit_code_is_1_when_a_run_fails(tmp_path):
    data = tmp_path / "d.csv"
    text = "a,y\n" + "\n".join(f"{i},{i % 2}" for i in range(40)) + "\n"
    data.write_text(text)
    cfg = write(tmp_path, f"""
dataset: {{name: csv, path: {data}}}
model: {{name: linear}}
loss: cross_entropy
optimizer: {{name: sgd, lr: 0.1}}
train: {{epochs: 2}}
seeds: [0, 1]
""")
    exp = load_experiment(cfg)
    data.unlink()
    outcome = run_experiment(exp, tmp_path / "o", workers=2)
    assert outcome.failed == 2
    data.write_text(text)  # a plain re-run trains nothing, and still reports the failures
    r = runner.invoke(app, ["run", str(cfg), "--out", str(tmp_path / "o")])
    assert r.exit_code == 1, r.output
    assert "2 of 2 runs already recorded (skipped); training 0" in r.output and "2 failed" in r.output


QUICK = """
name: quick
dataset: {name: moons, n_samples: 200}
model: {name: mlp, hidden: [8]}
loss: cross_entropy
optimizer: {name: sgd, lr: 0.1}
train: {epochs: 3}
grid: {optimizer.lr: [0.1, 0.2]}
"""


def test_a_changed_config_is_refused_unless_it_only_adds_runs(tmp_path):
    cfg, out = write(tmp_path, QUICK), tmp_path / "o"
    assert runner.invoke(app, ["run", str(cfg), "--out", str(out), "-q"]).exit_code == 0
    before = {p.name: p.read_text() for p in out.iterdir() if p.is_file() and p.name != ".lock"}

    r = runner.invoke(app, ["run", str(cfg), "--out", str(out), "--set", "train.epochs=4"])
    assert r.exit_code == 2
    assert r.output.strip() == (f"error: {out}: holds results of a different config (train.epochs 3 -> 4); "
                                "only adding grid values or seeds may reuse it. "
                                "Use --fresh to start over, or --out for a new directory")
    r = runner.invoke(app, ["run", str(cfg), "--out", str(out), "--set", "grid.optimizer.lr=[0.1]"])
    assert r.exit_code == 2 and "grid.optimizer.lr [0.1, 0.2] -> [0.1]" in r.output
    # nothing touched
    assert {p.name: p.read_text() for p in out.iterdir() if p.is_file() and p.name != ".lock"} == before

    # a wider grid and more seeds: only the new runs train
    r = runner.invoke(app, ["run", str(cfg), "--out", str(out), "--set", "grid.optimizer.lr=[0.1, 0.2, 0.4]",
                            "--set", "seeds=[0, 1]"])
    assert r.exit_code == 0, r.output
    assert "2 of 6 runs already recorded (skipped); training 4" in r.output
    assert len(pd.read_csv(out / "runs.csv")) == 6

    # --fresh forgets everything and trains what the config says
    r = runner.invoke(app, ["run", str(cfg), "--out", str(out), "--set", "train.epochs=4", "--fresh"])
    assert r.exit_code == 0 and "training 2 on" in r.output
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 2 and (runs.epochs == 4).all() and len(list((out / "records").iterdir())) == 2


def test_a_second_run_on_a_locked_directory_is_refused_and_a_dead_holder_is_taken_over(tmp_path):
    cfg, out = write(tmp_path, QUICK), tmp_path / "o"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from lossbench.sweep.store import Lock\nwith Lock(Path(sys.argv[1])):\n"
                               " print('held', flush=True); time.sleep(120)", str(out)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        r = runner.invoke(app, ["run", str(cfg), "--out", str(out)])
        assert r.exit_code == 2
        assert f"another `lossbench run` is writing here (pid {holder.pid} on" in r.output
        assert not (out / "runs.csv").exists()
        with pytest.raises(ResultsDirError):
            lossbench.run(cfg, out=out)
    finally:
        holder.kill()
        holder.wait()
    # the holder died without cleaning up: its lock file is still there, and is taken over
    assert (out / ".lock").read_text().startswith(f"pid {holder.pid} ")
    r = runner.invoke(app, ["run", str(cfg), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert len(pd.read_csv(out / "runs.csv")) == 2


def test_the_manifest_records_the_plan(tmp_path):
    cfg = write(tmp_path, QUICK)
    exp = load_experiment(cfg)
    run_experiment(exp, tmp_path / "o", workers=1)
    man = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert man["run_ids"] == [s.run_id for s in exp.runs] and man["interrupted"] is False and man["ended"]


def test_an_out_path_that_cannot_be_a_directory_is_one_line(tmp_path):
    cfg, out = write(tmp_path, QUICK), tmp_path / "a-file"
    out.write_text("not a directory")
    r = runner.invoke(app, ["run", str(cfg), "--out", str(out)])
    assert r.exit_code == 2
    assert r.output == f"error: {out}: is a file, not a directory; choose another --out\n"
    r = runner.invoke(app, ["run", str(cfg), "--out", str(out / "below")])  # a file on the way: the OS says why
    assert r.exit_code == 2
    assert r.output == f"error: {out / 'below'}: cannot be used as a results directory: Not a directory\n"


def test_a_worker_killed_after_the_last_run_was_handed_out_fails_only_its_run(tmp_path, monkeypatch):
    # a stray module in the current directory must not shadow the standard library in workers
    monkeypatch.chdir(tmp_path)
    (tmp_path / "copy.py").write_text("raise SystemExit('the workers imported ./copy.py')\n")
    cfg = write(tmp_path, QUICK.replace("train: {epochs: 3}", "train: {epochs: 400, batch_size: 8}"))
    exp = load_experiment(cfg)
    victim, pids = exp.runs[0].run_id, {}

    def on_event(kind, **info):
        if kind == "run_start":
            pids[info["spec"].run_id] = info["pid"]
        if kind == "epoch" and info["spec"].run_id == victim and info["row"]["epoch"] == 2:
            os.kill(pids[victim], signal.SIGKILL)  # both runs are out: there is nothing left to hand over

    outcome = run_experiment(exp, tmp_path / "o", on_event, workers=2)
    runs = pd.read_csv(tmp_path / "o" / "runs.csv").set_index("run_id")
    assert runs.loc[victim, "status"] == "failed" and runs.loc[exp.runs[1].run_id, "status"] == "ok"
    assert runs.loc[exp.runs[1].run_id, "epochs"] == 400 and outcome.failed == 1


def test_files_lossbench_did_not_write_are_never_overwritten(tmp_path):
    cfg = write(tmp_path, QUICK)
    mine = tmp_path / "config.yaml"
    mine.write_text("# my own notes\n")
    (tmp_path / ".notes.tmp").write_text("keep")
    r = runner.invoke(app, ["run", str(cfg), "--out", str(tmp_path)])
    assert r.exit_code == 2 and "holds config.yaml that lossbench did not write" in r.output
    assert mine.read_text() == "# my own notes\n" and (tmp_path / ".notes.tmp").exists()


def test_the_python_api_checks_its_arguments(tmp_path):
    cfg = write(tmp_path, QUICK)
    for kwargs, message in (({"workers": 0}, r"^workers: must be an integer >= 1, got 0$"),
                            ({"executor": "ray"}, r"^executor: must be one of \['local', 'dask'\], got 'ray'$")):
        with pytest.raises(lossbench.errors.LossbenchError, match=message):
            lossbench.run(cfg, out=tmp_path / "o", **kwargs)
    assert not (tmp_path / "o").exists()


def test_records_are_readable_like_any_file_the_user_writes(tmp_path):
    cfg = write(tmp_path, QUICK)
    lossbench.run(cfg, out=tmp_path / "o", workers=1)
    mode = (tmp_path / "o" / "runs.csv").stat().st_mode & 0o777
    assert mode == 0o666 & ~_umask() and mode & 0o044  # group/others can read with the usual umask


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


def test_a_forked_worker_keeps_only_its_pipes_and_the_standard_streams(tmp_path):
    """The parent's files (the results directory's lock above all) must not live on in a
    worker that outlives it: a forked worker closes every inherited descriptor."""
    lock = os.open(tmp_path / ".lock", os.O_RDWR | os.O_CREAT)
    task_r, task_w = os.pipe()
    res_r, res_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child reports which of the parent's descriptors it still holds, then leaves
        try:
            workers._forked_child(task_r, res_w, 1)
            still_open = [fd for fd in (lock, task_w, res_r, task_r, res_w) if _is_open(fd)]
            os.write(res_w, json.dumps(still_open).encode())
        finally:
            os._exit(0)
    os.close(res_w)
    report = os.read(res_r, 1000)
    os.waitpid(pid, 0)
    for fd in (lock, task_r, task_w, res_r):
        os.close(fd)
    assert json.loads(report) == [task_r, res_w]


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False
