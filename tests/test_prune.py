"""Successive halving (`prune:`): the rung decisions, pausing a run, and sweeps whose results
do not depend on the number of workers or on a kill and resume."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from lossbench import data as datasets
from lossbench.engine.train import train
from lossbench.errors import ConfigError
from lossbench.sweep import prune
from lossbench.sweep.config import load_experiment
from lossbench.sweep.spec import RunSpec

CONFIG = """
name: halving
dataset: {name: moons, n_samples: 1200, noise: 0.3}
model: {name: mlp, hidden: [16]}
loss: cross_entropy
optimizer: {name: sgd, lr: 0.1}
train: {epochs: 8, batch_size: 32}
seeds: [0, 1]
grid:
  optimizer.lr: [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0]
prune: {metric: val_accuracy, grace_epochs: 1, reduction_factor: 2}
"""
TIMING = ["wall_time_s", "time_to_target_s", "stack_size"]


def run(cfg, out, *args):
    r = subprocess.run([sys.executable, "-m", "lossbench", "run", str(cfg), "--out", str(out), *args],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def tables(out):
    runs, hist = pd.read_csv(out / "runs.csv"), pd.read_csv(out / "history.csv")
    return runs.drop(columns=TIMING, errors="ignore"), hist.drop(columns=["elapsed_s"])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    d = tmp_path_factory.mktemp("prune")
    (d / "c.yaml").write_text(CONFIG)
    r = run(d / "c.yaml", d / "o", "-j", "1")
    return d, r.stdout, tables(d / "o")


# -- the engine pauses a run without changing it ------------------------------------------


def test_a_paused_run_is_the_first_epochs_of_the_whole_run_schedule_included():
    data = datasets.load("moons", seed=0, n_samples=400, noise=0.3)
    kw = dict(model={"name": "mlp", "hidden": [8]}, loss="cross_entropy", optimizer={"name": "adam", "lr": 0.01},
              train={"epochs": 6, "batch_size": 32, "schedule": {"name": "cosine"}}, seed=3)
    whole, paused = train(data, **kw), train(data, **kw, stop_after=2)
    assert paused.paused and not whole.paused
    def figures(history):
        return [{k: v for k, v in row.items() if k != "elapsed_s"} for row in history]

    assert paused.epochs == 2 and figures(paused.history) == figures(whole.history[:2])  # lr too: cosine over 6
    assert paused.history[1]["lr"] < 0.01
    assert math.isnan(paused.summary["test_accuracy"])  # not tested before it finishes
    assert not train(data, **kw, stop_after=6).paused  # a budget that reaches the end is no pause


# -- decisions from records ---------------------------------------------------------------


def spec(cell: dict, seed: int) -> RunSpec:
    return RunSpec(f"{json.dumps(cell)}-{seed}", seed, {"train": {"epochs": 8}}, cell)


def rec(values, status="ok", paused=True, metric="val_accuracy") -> dict:
    return {"status": status, "paused": paused, "epochs": len(values),
            "history": [{"epoch": i + 1, metric: v} for i, v in enumerate(values)]}


HALF = prune.Pruning("val_accuracy", 1, 2)


def bracket(n_trials, seeds=(0, 1), p=HALF):
    runs = [spec({"lr": i}, s) for i in range(n_trials) for s in seeds]
    (b,) = prune.brackets(runs, [], p)
    return b, runs, p


def labels(trials):
    return [json.loads(t)["lr"] for t in trials]


def test_the_best_half_by_the_seeds_mean_goes_on():
    b, runs, p = bracket(4)
    acc = {0: (0.5, 0.9), 1: (0.8, 0.8), 2: (0.6, 0.6), 3: (0.95, 0.1)}  # means .7 .8 .6 .525
    records = {s.run_id: rec([acc[s.cell["lr"]][s.seed]]) for s in runs}
    keep, pruned = prune.decide(b, 0, records, p)
    assert labels(keep) == [1, 0] and labels(pruned) == [2, 3]
    assert b.rungs == [1, 2, 4]


def test_a_diverged_seed_is_the_worst_outcome_and_a_failed_one_is_missing():
    b, runs, p = bracket(4)
    records = {s.run_id: rec([0.9 - 0.1 * s.cell["lr"]]) for s in runs}  # trial 0 best, 3 worst
    records[runs[0].run_id] = rec([math.nan], status="diverged", paused=False)  # trial 0, seed 0
    records[runs[7].run_id] = {"status": "failed", "history": [], "epochs": 0}  # trial 3, seed 1
    keep, pruned = prune.decide(b, 0, records, p)
    assert labels(keep) == [1, 2] and labels(pruned) == [0, 3]  # 0 (0.9 and a diverged seed) is out


def test_lower_is_better_metrics_and_ties_keep_sweep_order():
    b, runs, p = bracket(4, p=prune.Pruning("val_loss", 1, 4))
    records = {s.run_id: rec([1.0 if s.cell["lr"] in (1, 2) else 2.0], metric="val_loss") for s in runs}
    keep, pruned = prune.decide(b, 0, records, p)
    assert labels(keep) == [1] and labels(pruned) == [0, 2, 3]  # 1 and 2 tie: the first in the sweep wins


def test_no_decision_until_every_run_of_the_rung_is_there():
    b, runs, p = bracket(3)
    records = {s.run_id: rec([0.5]) for s in runs[:-1]}
    assert prune.decide(b, 0, records, p) is None
    phase = prune.next_phase([b], records, p, set())
    assert [(s.run_id, s.budget) for s in phase.todo] == [(runs[-1].run_id, 1)] and not phase.pruned


def test_the_next_phase_replays_earlier_rungs_and_a_run_that_stopped_on_its_own_drops_out():
    b, runs, p = bracket(4, seeds=(0,))
    # rung 1 (epoch 1): trials 2 and 3 go on; trial 3 then stopped early (ok, 1 epoch): done, not competing
    records = {runs[0].run_id: rec([0.1]), runs[1].run_id: rec([0.2]), runs[2].run_id: rec([0.9, 0.5]),
               runs[3].run_id: rec([0.8], paused=False)}
    phase = prune.next_phase([b], records, p, {runs[3].run_id})
    assert [r["run_id"] if "run_id" in r else r["history"][-1][p.metric] for r in phase.pruned] == [0.1, 0.2]
    assert all(r["status"] == "pruned" and "paused" not in r for r in phase.pruned)
    assert phase.decisions == [(1, 2, 2)]
    # rung 2 (epoch 2): only trial 2 competes, it goes on; no rung is left below 8 for it but 4
    assert [(s.cell["lr"], s.budget) for s in phase.todo] == [(2, 4)]


def test_brackets_are_grid_cells_when_there_is_a_search():
    p = prune.Pruning()
    runs = [spec({"loss": loss, "lr": lr}, 0) for loss in ("mse", "ce") for lr in (0.1, 0.2, 0.3)]
    assert [len(b.trials) for b in prune.brackets(runs, ["lr"], p)] == [3, 3]
    assert [len(b.trials) for b in prune.brackets(runs, [], p)] == [6]


# -- sweeps --------------------------------------------------------------------------------


def test_halving_prunes_to_one_trial_which_matches_the_same_trial_unpruned(reference, tmp_path):
    d, stdout, (runs, hist) = reference
    assert list(runs.status.value_counts().sort_index().items()) == [("ok", 2), ("pruned", 14)]
    assert "rung at epoch 1: 4 of 8 trials go on by val_accuracy, 4 pruned" in stdout
    assert "16 runs: 2 ok, 14 pruned, 0 diverged, 0 failed" in stdout
    # the summary lists the pruned cells after the ranked one, those that lasted longest first
    lasted = [int(line.split("pruned at ")[1].split()[0]) for line in stdout.splitlines() if "pruned at" in line]
    assert lasted == [4, 2, 2] and "… and 4 more pruned cells (`lossbench compare` lists every cell)" in stdout
    # what trains, rung by rung (a line per paused run would be one per run per rung)
    assert [line for line in stdout.splitlines() if line.startswith("training ")] == [
        "training 16 runs to epoch 1", "training 8 runs to epoch 2", "training 4 runs to epoch 4",
        "training 2 runs to the end"]
    # a pruned run keeps its history up to its rung
    epochs = runs[runs.status == "pruned"].groupby("optimizer.lr").epochs.first()
    assert sorted(epochs.value_counts().items()) == [(1, 4), (2, 2), (4, 1)]
    assert hist.groupby("run_id").epoch.max().to_dict() == runs.set_index("run_id").epochs.to_dict()
    assert not list((d / "o" / "rungs").glob("*.json"))  # every paused copy is done with
    # the survivor is exactly the run of a sweep without prune
    (tmp_path / "c.yaml").write_text(CONFIG.replace("prune:", "#"))
    run(tmp_path / "c.yaml", tmp_path / "o", "-j", "1")
    full = tables(tmp_path / "o")[0].set_index("run_id")
    ok = runs[runs.status == "ok"].set_index("run_id")
    pd.testing.assert_frame_equal(ok, full.loc[ok.index, ok.columns])


def test_two_workers_make_the_same_decisions_and_numbers(reference, tmp_path):
    _, _, (runs, hist) = reference
    (tmp_path / "c.yaml").write_text(CONFIG)
    run(tmp_path / "c.yaml", tmp_path / "o", "-j", "2", "--stack", "off")
    runs2, hist2 = tables(tmp_path / "o")
    pd.testing.assert_frame_equal(runs2, runs)
    pd.testing.assert_frame_equal(hist2, hist)


SEARCH = CONFIG.split("grid:")[0] + """search:
  method: halton
  trials: 12
  space:
    optimizer.lr: {low: 0.001, high: 3.0, scale: log}
    optimizer.momentum: {low: 0.0, high: 0.95}
prune: {metric: val_accuracy, grace_epochs: 1, reduction_factor: 3}
"""


@pytest.mark.parametrize("config", ["grid", "search"])
def test_sigkill_in_a_rung_then_resume_gives_the_same_results(reference, tmp_path, config):
    _, _, (runs, hist) = reference
    cfg, out = tmp_path / "c.yaml", tmp_path / "o"
    if config == "search":  # its own uninterrupted reference, with one worker
        cfg.write_text(SEARCH)
        run(cfg, tmp_path / "ref", "-j", "1")
        runs, hist = tables(tmp_path / "ref")
        assert (runs.status == "pruned").sum() == 16 + 6 and runs["optimizer.momentum"].nunique() == 12  # 12, 4, 1
    else:
        cfg.write_text(CONFIG)
    proc = subprocess.Popen([sys.executable, "-m", "lossbench", "run", str(cfg), "--out", str(out), "-q",
                             "-j", "2", "--stack", "off"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while not len(list((out / "records").glob("*.json")) if (out / "records").is_dir() else []):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)  # the first rung decided, later rungs in flight
    proc.wait()
    before = pd.read_csv(out / "runs.csv") if (out / "runs.csv").exists() else None
    assert before is None or len(before) < len(runs)
    r = run(cfg, out, "-j", "2")
    assert "already recorded (skipped)" in r.stdout
    runs2, hist2 = tables(out)
    pd.testing.assert_frame_equal(runs2, runs)
    pd.testing.assert_frame_equal(hist2, hist)


def test_compare_never_ranks_a_pruned_trial(reference):
    from lossbench import api

    d, _, (runs, _) = reference
    table = api.compare([d / "o"], by=["optimizer.lr"], metric="val_accuracy").table
    ranked = table[table["rank"].notna()]
    assert list(ranked["optimizer.lr"]) == list(runs[runs.status == "ok"]["optimizer.lr"].unique())
    assert len(ranked) == 1 and (table["pruned"] == 2).sum() == 7
    # a pruned run's figure is not a final one: missing from the median and IQM, as a failed run's
    assert table.loc[table["pruned"] > 0, ["median", "iqm", "n"]].fillna(0).eq(0).all().all()


# -- config ----------------------------------------------------------------------------------


@pytest.mark.parametrize("prune_section, message", [
    ("{metric: val_acc}", "prune.metric: must be a validation metric of this dataset, one of ['val_loss', "
                          "'val_accuracy']"),
    ("{reduction_factor: 1}", "prune.reduction_factor"),
    ("{grace_epochs: 0}", "prune.grace_epochs"),
    ("{grace_epochs: 8}", "prune.grace_epochs: must be below train.epochs (8) for a rung to prune at, got 8"),
    ("{patience: 2}", "prune.patience: unknown option (prune takes metric, grace_epochs, reduction_factor)"),
    ("4", "prune: must be a mapping"),
])
def test_prune_mistakes_are_one_line_naming_the_key(prune_section, message, tmp_path):
    (tmp_path / "c.yaml").write_text(CONFIG.replace("{metric: val_accuracy, grace_epochs: 1, reduction_factor: 2}",
                                                    prune_section))
    with pytest.raises(ConfigError, match=None) as e:
        load_experiment(tmp_path / "c.yaml")
    assert message in str(e.value) and "\n" not in str(e.value)


def test_prune_needs_a_validation_split(tmp_path):
    (tmp_path / "c.yaml").write_text(CONFIG.replace("noise: 0.3}", "noise: 0.3, val_fraction: 0}"))
    with pytest.raises(ConfigError, match="prune.metric: is measured on the validation split, and dataset moons "
                                          "has none: set dataset.val_fraction > 0"):
        load_experiment(tmp_path / "c.yaml")


def test_rungs():
    assert prune.Pruning(grace_epochs=1, reduction_factor=4).rungs(16) == [1, 4]
    assert prune.Pruning(grace_epochs=2, reduction_factor=3).rungs(19) == [2, 6, 18]
    assert prune.Pruning(grace_epochs=5).rungs(5) == []
    assert np.all(np.diff(prune.Pruning(reduction_factor=2).rungs(100)) > 0)


def test_without_prune_the_pruned_runs_train_to_the_end_and_the_finished_ones_stay(reference, tmp_path):
    import shutil

    d, _, (runs, _) = reference
    shutil.copytree(d / "o", tmp_path / "o")
    finished = {p.name: p.read_bytes() for p in (tmp_path / "o" / "records").glob("*.json")
                if json.loads(p.read_bytes())["status"] == "ok"}
    (tmp_path / "c.yaml").write_text(CONFIG.replace("prune:", "#"))
    r = run(tmp_path / "c.yaml", tmp_path / "o", "-j", "1")
    assert "2 of 16 runs already recorded (skipped); training 14" in r.stdout
    assert all((tmp_path / "o" / "records" / n).read_bytes() == b for n, b in finished.items())
    assert set(pd.read_csv(tmp_path / "o" / "runs.csv").status) == {"ok"}


def test_the_dry_run_says_the_rungs_and_the_epochs_prune_trains_at_most(reference):
    d, _, _ = reference
    r = subprocess.run([sys.executable, "-m", "lossbench", "run", str(d / "c.yaml"), "--out", str(d / "new"),
                        "--dry-run"], capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    # 16 runs at rung 1, 8 to epoch 2, 4 to epoch 4, the last 2 to epoch 8: 16 + 16 + 16 + 16
    assert ("prune: at epochs 1, 2, 4 the best 1 in 2 trials by val_accuracy go on (1 bracket): at most 64 of 128 "
            "epochs train (50%)") in r.stdout
    exp = load_experiment(d / "c.yaml")
    assert prune.epochs_to_train(prune.brackets(exp.runs, [], prune.Pruning(reduction_factor=4))) == (16 + 32, 128)


def test_prune_null_turns_it_off(tmp_path):
    (tmp_path / "c.yaml").write_text(CONFIG)
    assert load_experiment(tmp_path / "c.yaml").prune == HALF
    exp = load_experiment(tmp_path / "c.yaml", ["prune=null"])
    assert exp.prune is None and "prune" not in exp.config


def test_a_search_beside_a_grid_halves_each_grid_cell_on_its_own(tmp_path):
    cfg = CONFIG.split("grid:")[0] + """grid:
  loss: [cross_entropy, mse]
search:
  trials: 6
  space:
    optimizer: [{name: sgd, lr: 0.3}, {name: adam, lr: 0.01}, {name: rmsprop, lr: 0.001}]
    train.batch_size: {low: 16, high: 64, type: int}
prune: {metric: val_accuracy, reduction_factor: 2}
"""
    (tmp_path / "c.yaml").write_text(cfg)
    exp = load_experiment(tmp_path / "c.yaml")
    assert set(exp.searched) == {"train.batch_size", "optimizer"}
    bs = prune.brackets(exp.runs, exp.searched, exp.prune)
    # a whole searched section (optimizer) flattens to optimizer.name in the cells: still searched
    assert sorted(json.loads(next(iter(b.trials)))["loss.name"] for b in bs) == ["cross_entropy", "mse"]
    assert [len(b.trials) for b in bs] == [len({json.dumps(s.cell, sort_keys=True) for s in exp.runs}) // 2] * 2
    r = run(tmp_path / "c.yaml", tmp_path / "o", "-j", "2")
    runs = pd.read_csv(tmp_path / "o" / "runs.csv")
    assert sorted(runs[runs.status == "ok"]["loss.name"].unique()) == ["cross_entropy", "mse"]  # one winner each
    assert r.stdout.count("rung at epoch 1:") == 2


def test_plot_rungs_draws_every_trial_until_it_stopped(reference, monkeypatch):
    pytest.importorskip("matplotlib")
    from lossbench import api
    from lossbench.analysis import plots

    d, _, (runs, hist) = reference
    figs = []
    monkeypatch.setattr(plots, "save", lambda fig, path: figs.append(fig) or path)
    api.plot([d / "o"], "rungs", "val_accuracy")
    ax = figs[0].axes[0]
    grey = [ln for ln in ax.lines if ln.get_color() == "0.6"]
    crosses = [ln for ln in ax.lines if ln.get_marker() == "x"]
    rungs = sorted(ln.get_xdata()[0] for ln in ax.lines if ln.get_linestyle() == ":")
    assert len(grey) == len(crosses) == 7 and rungs == [1, 2, 4]
    assert sorted(int(ln.get_xdata()[-1]) for ln in grey) == [1, 1, 1, 1, 2, 2, 4]
    (winner,) = [ln for ln in ax.lines if ln.get_label() and not ln.get_label().startswith("_")]
    ok = runs[runs.status == "ok"]
    mean = hist[hist.run_id.isin(ok.run_id)].groupby("epoch").val_accuracy.mean()
    assert np.allclose(winner.get_ydata(), mean.to_numpy())
    assert winner.get_label() == f"lr={ok['optimizer.lr'].iloc[0]:g}"


def test_plot_rungs_without_pruned_runs_is_one_line(tmp_path):
    pytest.importorskip("matplotlib")
    (tmp_path / "c.yaml").write_text(CONFIG.replace("prune:", "#"))
    run(tmp_path / "c.yaml", tmp_path / "o", "-j", "1", "-q")
    r = subprocess.run([sys.executable, "-m", "lossbench", "plot", str(tmp_path / "o"), "--kind", "rungs"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no run was pruned" in r.stderr


def test_compare_hp_leaves_pruned_values_out_and_says_so(reference, tmp_path):
    from lossbench import api
    from lossbench.analysis import compare as cmp
    from lossbench.errors import LossbenchError

    d, _, (runs, _) = reference
    p = api.load_problems([d / "o"])[0]
    with pytest.raises(LossbenchError, match="at most one value of optimizer.lr per group finished"):
        cmp.lr_sensitivity(p, [], "val_accuracy")
    # a sweep where two trials finish: the seven pruned values are counted, not drawn as gaps
    (tmp_path / "c.yaml").write_text(CONFIG.replace("reduction_factor: 2}", "reduction_factor: 4}"))
    run(tmp_path / "c.yaml", tmp_path / "o", "-j", "1", "-q", "--set", "train.epochs=3")
    p = api.load_problems([tmp_path / "o"])[0]
    sens = cmp.lr_sensitivity(p, [], "val_accuracy")
    assert sens["pruned"].tolist() == [6] and len(sens["lrs"][0]) == 2
