"""Issue 10, item 6: output that fits the terminal and says what is happening (real processes)."""

import os
import re
import subprocess
import sys

import pandas as pd
import pytest
from rich.cells import cell_len

QUICK = """
name: fit
dataset: {name: spirals, n_samples: 300, n_classes: 3, noise: 0.2}
model: {name: mlp, hidden: [16], activation: tanh}
loss: cross_entropy
optimizer: {name: adam, lr: 0.01}
train: {epochs: 4, batch_size: 32}
seeds: [0, 1]
grid:
  loss: [cross_entropy, squared_hinge]
  optimizer: [{name: momentum, lr: 0.05}, {name: adam, lr: 0.01}]
target: {metric: val_accuracy, value: 0.5}
"""
ANSI = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]")


def lossbench(*args, columns=None, terminal=False, cwd=None):
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
    env.pop("COLUMNS", None)
    if terminal:  # what Rich sees on a terminal of this width
        env.update(FORCE_COLOR="1", NO_COLOR="1", COLUMNS=str(columns))
    r = subprocess.run([sys.executable, "-m", "lossbench", *map(str, args)], capture_output=True, text=True,
                       env=env, cwd=cwd)
    return r.returncode, ANSI.sub("", r.stdout), r.stderr


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    d = tmp_path_factory.mktemp("fit")
    (d / "c.yaml").write_text(QUICK)
    code, out, err = lossbench("run", d / "c.yaml", "--out", d / "out", "-j", "1")
    assert code == 0, err
    return d, out


def _words_of(text):
    return set(re.findall(r"[\w.=≥()%/-]+", text))


@pytest.mark.parametrize("columns", [80, 100, 120])
@pytest.mark.parametrize("command", [["show"], ["compare"], ["compare", "--by", "optimizer.name"]])
def test_tables_fit_the_terminal_without_cutting_numbers_or_names(results, columns, command):
    d, _ = results
    code, out, _ = lossbench(*command, d / "out", columns=columns, terminal=True)
    assert code == 0
    assert max(cell_len(line) for line in out.splitlines()) <= columns
    assert "…" not in out  # nothing cut
    code, csv, _ = lossbench("compare", d / "out", *command[1:], "--format", "csv")
    table = pd.read_csv(__import__("io").StringIO(csv))
    words = _words_of(out)
    for _, row in table.iterrows():
        assert set(str(row["group"]).replace(",", "").split()) <= words  # every name whole (wrapped at spaces)
        assert f"{row['best_mean']:.4f}" in words and f"{row['best_std']:.4f}" in words  # every figure whole


def test_a_narrow_terminal_says_what_it_left_out_and_a_pipe_gets_everything(results):
    d, _ = results
    _, narrow, _ = lossbench("compare", d / "out", columns=80, terminal=True)
    assert "not shown at 80 columns: val loss, 95% CI" in narrow
    code, piped, _ = lossbench("compare", d / "out")
    assert code == 0 and "not shown" not in piped and "95% CI" in piped and "▁" in piped
    header = next(line for line in piped.splitlines() if "group" in line)
    assert "epochs to val_accuracy ≥ 0.5" in header and "final val_accuracy" in header  # plain, one line per row
    assert all("cross_entropy, momentum, lr=0.05" in line for line in piped.splitlines()
               if line.startswith("│") and "cross_entropy, momentum" in line)


def test_a_log_gets_one_line_per_finished_run_with_done_total_and_eta(results):
    _, out = results  # `run` with stdout captured: not a terminal
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert len(lines) == 8
    assert re.fullmatch(r"\[1/8\] cross_entropy, momentum, lr=0\.05, seed 0: ok in \d+\.\d\d s · elapsed 0:00:\d\d · "
                        r"ETA 0:\d\d:\d\d", lines[0]), lines[0]
    assert lines[-1].startswith("[8/8] squared_hinge, adam, lr=0.01, seed 1: ok in ") and lines[-1].endswith("· done")


def test_the_progress_bar_names_what_trains(tmp_path):
    (tmp_path / "c.yaml").write_text(QUICK.replace("epochs: 4", "epochs: 400"))
    code, out, _ = lossbench("run", tmp_path / "c.yaml", "--out", tmp_path / "o", "-j", "1", "--set",
                             "seeds=[3]", "--set", "grid.loss=[cross_entropy]", "--set",
                             "grid.optimizer=[{name: adam, lr: 0.01}]", columns=80, terminal=True)
    assert code == 0
    frames = out.replace("\r", "\n").splitlines()
    assert any(re.fullmatch(r"cross_entropy, adam, lr=0\.01, seed 3 · epoch \d+/400 · val_loss [\d.]+ *", f)
               for f in frames), out[-2000:]  # on its own line, whole
    bars = [f for f in frames if f.startswith("runs ")]
    assert bars and all("…" not in f and cell_len(f.rstrip()) <= 80 for f in bars)
    assert any(re.match(r"runs [━╸╺ ]+ 0/1 0:00:\d\d ETA", f) for f in bars), bars[:3]
    assert "1 run: 1 ok, 0 diverged, 0 failed" in out  # not "1 runs"


def test_failed_runs_beyond_five_are_counted_not_dropped(results, tmp_path):
    d, _ = results
    import shutil

    shutil.copytree(d / "out", tmp_path / "out")
    runs = pd.read_csv(tmp_path / "out" / "runs.csv", dtype={"error": str})
    runs.loc[:6, "status"], runs.loc[:6, "error"] = "failed", "ValueError: boom"
    runs.to_csv(tmp_path / "out" / "runs.csv", index=False)
    code, out, _ = lossbench("show", tmp_path / "out")
    assert code == 0 and out.count("ValueError: boom") == 5
    assert "… and 2 more failed (see runs.csv)" in out and "8 runs: 1 ok, 0 diverged, 7 failed" in out


def test_validate_and_dry_run_say_what_is_recorded_what_will_train_and_how_long(results, tmp_path):
    d, _ = results
    code, out, _ = lossbench("run", d / "c.yaml", "--out", tmp_path / "new", "--dry-run", "-j", "2")
    assert code == 0 and not (tmp_path / "new").exists()
    assert re.search(rf"{tmp_path / 'new'}: 0 of 8 runs already recorded; 8 will train, about 0:\d\d:\d\d on 2 "
                     r"workers \(estimated from one epoch each of 2 runs with different models or optimizers\)",
                     out), out
    code, out, _ = lossbench("run", d / "c.yaml", "--out", d / "out", "--dry-run", "--set", "seeds=[0, 1, 2]")
    assert code == 0
    assert re.search(rf"{d / 'out'}: 8 of 12 runs already recorded; 4 will train, about 0:\d\d:\d\d on \d workers? "
                     r"\(estimated from the 8 recorded runs\)", out), out
    code, out, _ = lossbench("validate", d / "c.yaml", cwd=d)  # default directory results/fit: none yet
    assert code == 0 and "results/fit: 0 of 8 runs already recorded; 8 will train, about" in out
    assert not (d / "results").exists()


BLOCK = """
import sys
class NoExtra:  # as if the extra were not installed
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("matplotlib", "distributed"):
            raise ImportError(name)
sys.meta_path.insert(0, NoExtra())
sys.argv = ["lossbench", *sys.argv[1:]]
from lossbench.cli import app
app()
"""


@pytest.mark.parametrize("where", ["checkout", "elsewhere", "installed"])
def test_the_missing_extra_hint_works_where_the_user_is(results, tmp_path, where):
    import shutil

    d, _ = results
    checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path, cwd = checkout, checkout if where == "checkout" else tmp_path
    if where == "installed":  # the package alone, as pip puts it in site-packages
        shutil.copytree(os.path.join(checkout, "lossbench"), tmp_path / "site" / "lossbench")
        path = tmp_path / "site"
    env = {**os.environ, "PYTHONPATH": str(path)}
    for args, extra in ((["plot", d / "out"], "plot"),
                        (["run", d / "c.yaml", "--executor", "dask", "--address", "tcp://127.0.0.1:1"], "dask")):
        r = subprocess.run([sys.executable, "-c", BLOCK, *map(str, args)], capture_output=True, text=True,
                           env=env, cwd=cwd)
        hint = {"checkout": f'pip install -e ".[{extra}]"',
                "elsewhere": f'pip install -e "{checkout}[{extra}]" (your lossbench checkout)',
                "installed": f'pip install "lossbench[{extra}]"'}[where]
        assert r.returncode == 2 and r.stderr.endswith(f"{hint}\n"), r.stderr


def test_the_dry_run_times_one_epoch_of_each_kind_of_run_most_different_first(monkeypatch):
    """Muon's steps cost several of SGD's, a CNN's epoch many of an MLP's: timing only the
    first run once said 6 minutes for a 16-minute sweep."""
    from lossbench import api
    from lossbench.sweep.config import load_experiment

    kinds = [(m, o) for m in ("mlp", "cnn") for o in ("sgd", "adam", "muon", "lion")]
    assert api._probes(kinds)[:4] == [("mlp", "sgd"), ("cnn", "adam"), ("mlp", "muon"), ("cnn", "lion")]
    assert api._probes(kinds[:1]) == kinds[:1]
    exp = load_experiment({"dataset": {"name": "moons", "n_samples": 200}, "model": "mlp", "loss": "cross_entropy",
                           "optimizer": "sgd", "train": {"epochs": 10},
                           "grid": {"optimizer.name": ["sgd", "adam"], "model.hidden": [[4], [8], [16]]}})
    cost = {"sgd": 1.0, "adam": 3.0}
    timed = []

    def fake_run_one(spec, datasets):
        timed.append((spec.config["optimizer"]["name"], spec.config["model"]["hidden"], spec.config["train"]["epochs"]))
        clock[0] += cost[spec.config["optimizer"]["name"]] * (1 + spec.config["model"]["hidden"][0] / 16)
        return {"status": "ok"}

    clock = [0.0]
    monkeypatch.setattr(api, "run_one", fake_run_one)
    monkeypatch.setattr(api.time, "perf_counter", lambda: clock[0])
    seconds, basis = api._probe(exp, exp.runs)
    assert timed[:3] == [("sgd", [4], 1), ("adam", [8], 1), ("sgd", [16], 1)]  # a new model or optimizer each
    assert sorted(map(str, timed)) == sorted(str((o, [h], 1)) for o in cost for h in (4, 8, 16))
    assert seconds == pytest.approx(10 * sum(cost[o] * (1 + h / 16) for o in cost for h in (4, 8, 16)))
    assert basis == "from one epoch each of 6 runs with different models or optimizers"
    # fewer probes than kinds: a kind not timed costs what its model's timed kinds cost
    monkeypatch.setattr(api, "MAX_PROBES", 3)
    todo = [s for s in exp.runs if (s.config["optimizer"]["name"], s.config["model"]["hidden"][0]) in
            (("sgd", 4), ("sgd", 16), ("adam", 4), ("adam", 8))]
    seconds, basis = api._probe(exp, todo)  # times sgd 4, adam 8, sgd 16; adam 4 is guessed from sgd 4
    assert seconds == pytest.approx(10 * (1.25 + 4.5 + 2 + 1.25))
    assert basis.endswith("3 runs with different models or optimizers, 3 of the sweep's 4")
