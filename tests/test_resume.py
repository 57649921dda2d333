"""Real processes, real signals: SIGKILL a sweep and resume it; Ctrl-C it and keep what finished."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

CONFIG = """
name: resume
dataset: {name: moons, n_samples: 2000, noise: 0.25}
model: {name: mlp, hidden: [32]}
loss: cross_entropy
optimizer: {name: sgd, lr: 0.1}
train: {epochs: 40, batch_size: 32}
seeds: [0, 1]
target: {metric: val_accuracy, value: 0.85}
grid:
  optimizer.name: [sgd, momentum, adam]
  optimizer.lr: [0.1, 0.01]
"""
N_RUNS = 12
TIMING = ["wall_time_s", "time_to_target_s", "stack_size"]  # how a run was executed, not what it computed


def start(cfg, out, *args):
    # its own session, like a job in a terminal: signals go to the whole process group.
    # Stacks of two: runs are recorded a stack at a time, so interrupts land with runs
    # recorded and stacks still in flight (a kill loses at most those)
    return subprocess.Popen([sys.executable, "-m", "lossbench", "run", str(cfg), "--out", str(out), "-q",
                             "--stack", "2", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def wait_for_records(out, n, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(list((out / "records").glob("*.json"))) >= n if (out / "records").is_dir() else False:
            return
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.01)
    pytest.fail(f"fewer than {n} runs recorded after {timeout}s")


def group_gone(pgid, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def check_consistent(out):
    """Whatever the moment: every record parses, and the tables hold only whole rows of recorded runs."""
    recorded = {}
    for p in (out / "records").glob("*.json"):
        recorded[p.stem] = json.loads(p.read_text())
        assert recorded[p.stem]["status"] == "ok"
    if (out / "runs.csv").exists():
        runs = pd.read_csv(out / "runs.csv")
        assert set(runs.run_id) <= set(recorded) and runs.status.notna().all() and runs.n_params.notna().all()
        hist = pd.read_csv(out / "history.csv")
        assert set(hist.run_id) <= set(recorded) and hist.elapsed_s.notna().all()
    return recorded


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same sweep, never interrupted."""
    d = tmp_path_factory.mktemp("ref")
    (d / "c.yaml").write_text(CONFIG)
    r = subprocess.run([sys.executable, "-m", "lossbench", "run", str(d / "c.yaml"), "--out", str(d / "o"), "-q"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return pd.read_csv(d / "o" / "runs.csv"), pd.read_csv(d / "o" / "history.csv")


def assert_same_as_reference(out, reference):
    runs, hist = pd.read_csv(out / "runs.csv"), pd.read_csv(out / "history.csv")
    pd.testing.assert_frame_equal(runs.drop(columns=TIMING, errors="ignore"),
                                  reference[0].drop(columns=TIMING, errors="ignore"))
    pd.testing.assert_frame_equal(hist.drop(columns=["elapsed_s"]), reference[1].drop(columns=["elapsed_s"]))


def test_sigkill_then_resume_loses_nothing_and_matches_an_uninterrupted_run(tmp_path, reference):
    cfg, out = tmp_path / "c.yaml", tmp_path / "o"
    cfg.write_text(CONFIG)
    proc = start(cfg, out, "--workers", "2")
    wait_for_records(out, 3, proc)
    os.killpg(proc.pid, signal.SIGKILL)  # the parent and its workers, mid-sweep
    proc.wait()
    assert group_gone(proc.pid)
    before = check_consistent(out)
    assert 3 <= len(before) < N_RUNS
    files = {p.name: p.read_bytes() for p in (out / "records").glob("*.json")}

    r = subprocess.run([sys.executable, "-m", "lossbench", "run", str(cfg), "--out", str(out), "--workers", "2"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (f"{len(before)} of {N_RUNS} runs already recorded (skipped); "
            f"training {N_RUNS - len(before)} on 2 workers") in r.stdout
    # finished runs were not trained again: their records are byte for byte what they were
    assert all((out / "records" / name).read_bytes() == data for name, data in files.items())
    assert_same_as_reference(out, reference)
    assert f"{N_RUNS} runs: {N_RUNS} ok" in r.stdout
    # a write the kill cut short left at most a temporary file, which the next run cleared
    assert not list(out.rglob("*.tmp"))


def test_ctrl_c_keeps_finished_runs_prints_the_partial_summary_and_exits_130(tmp_path, reference):
    cfg, out = tmp_path / "c.yaml", tmp_path / "o"
    cfg.write_text(CONFIG)
    proc = start(cfg, out)  # default workers: one per core
    wait_for_records(out, 2, proc)
    os.killpg(proc.pid, signal.SIGINT)  # what the terminal sends on Ctrl-C
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output
    assert group_gone(proc.pid)  # no worker left behind
    recorded = check_consistent(out)
    runs = pd.read_csv(out / "runs.csv")
    assert sorted(runs.run_id) == sorted(recorded)  # the tables were brought up to date on the way out
    assert f"{len(recorded)} of {N_RUNS} runs recorded; run the same command again" in output
    assert f"{len(recorded)} runs: {len(recorded)} ok" in output and "best val_accuracy" in output
    assert json.loads((out / "manifest.json").read_text())["interrupted"] is True

    r = subprocess.run([sys.executable, "-m", "lossbench", "run", str(cfg), "--out", str(out), "-q"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert_same_as_reference(out, reference)


def test_sigterm_stops_as_cleanly_as_ctrl_c(tmp_path):
    cfg, out = tmp_path / "c.yaml", tmp_path / "o"
    cfg.write_text(CONFIG)
    proc = start(cfg, out, "--workers", "1")  # in-process training: the interrupt lands inside a run
    wait_for_records(out, 1, proc)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output
    recorded = check_consistent(out)
    assert sorted(pd.read_csv(out / "runs.csv").run_id) == sorted(recorded)


def test_ctrl_c_before_any_run_finished_is_clean(tmp_path):
    cfg, out = tmp_path / "c.yaml", tmp_path / "o"
    cfg.write_text(CONFIG)
    proc = start(cfg, out)
    deadline = time.monotonic() + 60
    while not (out / "manifest.json").exists() and time.monotonic() < deadline:  # the workers are starting
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in output, output
    assert "runs recorded; run the same command again" in output
