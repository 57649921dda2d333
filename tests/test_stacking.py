"""Which runs a sweep stacks (`run --stack`), and the tables it writes when it does."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from lossbench.cli import app
from lossbench.errors import ConfigError
from lossbench.sweep.config import load_experiment
from lossbench.sweep.stacking import plan_stacks

runner = CliRunner()
CONFIGS = Path(__file__).parent.parent / "configs"


def experiment(model="{name: mlp, hidden: [8]}", grid="{optimizer.lr: [0.1, 0.05, 0.02, 0.01]}", seeds="[0, 1]"):
    return load_experiment(yaml.safe_load(experiment_yaml(model, grid, seeds)))


def experiment_yaml(model, grid, seeds):
    return f"""
name: s
dataset: {{name: moons, n_samples: 200}}
model: {model}
loss: cross_entropy
optimizer: {{name: sgd, lr: 0.1}}
train: {{epochs: 2, batch_size: 16}}
seeds: {seeds}
grid: {grid}
"""


def sizes(stacks):
    return [len(s) for s in stacks]


def test_auto_stacks_one_small_model_and_spreads_it_over_the_workers():
    exp = experiment()
    assert sizes(plan_stacks(exp.runs, "auto", 1, exp.datasets)) == [8]
    assert sizes(plan_stacks(exp.runs, "auto", 2, exp.datasets)) == [4, 4]
    assert sizes(plan_stacks(exp.runs, 3, 1, exp.datasets)) == [3, 3, 2]
    assert sizes(plan_stacks(exp.runs, "off", 1, exp.datasets)) == [1] * 8
    # every run once, in the experiment's order within and across stacks
    flat = [s.run_id for st in plan_stacks(exp.runs, 3, 1, exp.datasets) for s in st]
    assert flat == [s.run_id for s in exp.runs]


def test_runs_stack_only_with_the_same_data_model_and_batches():
    exp = experiment(grid="{optimizer.lr: [0.1, 0.05], model.hidden: [[8], [16]], train.batch_size: [16, 32]}",
                     seeds="[0]")
    assert sizes(plan_stacks(exp.runs, "auto", 1, exp.datasets)) == [2, 2, 2, 2]
    for stack in plan_stacks(exp.runs, "auto", 1, exp.datasets):
        assert len({(s.config["model"]["hidden"][0], s.config["train"]["batch_size"]) for s in stack}) == 1
    # full batch (gd) is other batches than mini-batch sgd
    exp = experiment(grid="{optimizer.name: [sgd, gd], optimizer.lr: [0.1, 0.05]}", seeds="[0]")
    assert sorted(sizes(plan_stacks(exp.runs, "auto", 1, exp.datasets))) == [2, 2]


def test_losses_with_other_output_counts_stack_apart():
    # bce on two classes has one output, cross_entropy two: one stack would fail and fall back
    exp = experiment(grid="{loss.name: [cross_entropy, bce, mse], optimizer.lr: [0.1, 0.05]}", seeds="[0]")
    stacks = plan_stacks(exp.runs, "auto", 1, exp.datasets)
    assert sorted(sizes(stacks)) == [2, 2, 2]
    assert all(len({s.config["loss"]["name"] for s in st}) == 1 for st in stacks)


def test_auto_leaves_a_large_model_alone_and_n_stacks_it(monkeypatch):
    exp = experiment(model="{name: mlp, hidden: [2000, 2000]}", seeds="[0]")  # 4M params x batch 16
    assert sizes(plan_stacks(exp.runs, "auto", 1, exp.datasets)) == [1, 1, 1, 1]
    assert sizes(plan_stacks(exp.runs, 2, 1, exp.datasets)) == [2, 2]
    from lossbench.sweep import stacking
    monkeypatch.setattr(stacking, "MEMORY_BUDGET", 4_100_000 * 8 * 4 * 3)  # room for 3 such runs: 2 stacks
    assert sizes(plan_stacks(exp.runs, 4, 1, exp.datasets)) == [2, 2]
    monkeypatch.setattr(stacking, "MEMORY_BUDGET", 4_100_000 * 8 * 4)  # room for one
    assert sizes(plan_stacks(exp.runs, 4, 1, exp.datasets)) == [1, 1, 1, 1]


def test_bad_stack_option_is_one_line(tmp_path):
    exp = experiment()
    with pytest.raises(ConfigError, match=r"^stack: .*got 'sometimes'"):
        plan_stacks(exp.runs, "sometimes", 1, exp.datasets)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: s\ndataset: moons\nmodel: linear\nloss: cross_entropy\noptimizer: sgd\n")
    r = runner.invoke(app, ["run", str(cfg), "--out", str(tmp_path / "o"), "--stack", "0"])
    assert r.exit_code == 2 and r.output.startswith("error: --stack: ") and "got 0" in r.output
    assert not (tmp_path / "o").exists()


def test_a_stacked_sweep_writes_the_tables_of_an_unstacked_one(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("""name: s
dataset: {name: moons, n_samples: 300}
model: {name: mlp, hidden: [8], dropout: 0.2}
loss: cross_entropy
optimizer: {name: sgd, lr: 0.1}
train: {epochs: 4, batch_size: 16, early_stopping: {patience: 1, min_delta: 0.05}}
seeds: [0, 1]
grid:
  optimizer.name: [sgd, adam, rmsprop]
  optimizer.lr: [0.1, 0.01, 1.0e+12]
""")
    out = {}
    for stack in ("off", "auto", "4"):
        r = runner.invoke(app, ["run", str(cfg), "--out", str(tmp_path / stack), "-q", "-j", "1", "--stack", stack])
        assert r.exit_code == 0, r.output
        out[stack] = (pd.read_csv(tmp_path / stack / "runs.csv"), pd.read_csv(tmp_path / stack / "history.csv"))
    timing = ["wall_time_s", "time_to_target_s", "stack_size"]
    for stack in ("auto", "4"):
        pd.testing.assert_frame_equal(out[stack][0].drop(columns=timing, errors="ignore"),
                                      out["off"][0].drop(columns=timing, errors="ignore"))
        pd.testing.assert_frame_equal(out[stack][1].drop(columns="elapsed_s"), out["off"][1].drop(columns="elapsed_s"))
    assert "stack_size" not in out["off"][0] and set(out["auto"][0].stack_size) == {18}
    assert sorted(out["4"][0].stack_size.value_counts().items()) == [(2, 2), (4, 16)]
    assert set(out["off"][0].status) == {"ok", "diverged"}
    # compare says when times are shares of a stack's
    from lossbench import api
    shared = [w for w in api.compare([tmp_path / "4"]).warnings if "stacked" in w]
    assert shared == ["some runs trained stacked (2, 4 runs per stack; stack_size in runs.csv): their times are "
                      "shares of their stack's time, not times alone; the epochs and steps to target "
                      "(and compare --profile --cost epochs or steps) do not depend on how runs were executed"]
    assert not [w for w in api.compare([tmp_path / "off"]).warnings if "stacked" in w]


def test_the_progress_line_of_a_stack_names_its_first_run_and_how_many_more():
    from rich.console import Console

    from lossbench.analysis.report import Progress

    exp = experiment()
    stack = exp.runs[:3]
    with Progress(Console(file=open(os.devnull, "w"), force_terminal=True), enabled=True) as progress:  # noqa: SIM115
        progress.on_event("start", total=8, done=0)
        for spec in stack:
            progress.on_event("run_start", spec=spec, stack=stack)
        shown = progress.bar.tasks[0].description
        assert shown == "lr=0.1, seed 0 and 2 more, stacked · starting"
        progress.on_event("epoch", spec=stack[0], row={"epoch": 1, "val_loss": 0.5})
        progress.on_event("epoch", spec=stack[2], row={"epoch": 1, "val_loss": 0.9})  # a stackmate: not shown
        assert progress.bar.tasks[0].description == "lr=0.1, seed 0 and 2 more, stacked · epoch 1/2 · val_loss 0.5"
        progress.on_event("run_start", spec=exp.runs[3])  # alone
        assert progress.bar.tasks[0].description == "lr=0.05, seed 1 · starting"


def test_a_reader_that_leaves_costs_no_run(tmp_path):
    # `lossbench run ... | head -1`: the pipe closes after the first line; every run is still
    # recorded (Rich's default is to exit, which lost the finished runs of a stack not yet stored)
    import subprocess
    import sys

    out = tmp_path / "o"
    p = subprocess.Popen([sys.executable, "-m", "lossbench", "run", str(CONFIGS / "quickstart.yaml"), "--out", str(out),
                          "-j", "2", "--stack", "3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "training 18" in p.stdout.readline()
    p.stdout.close()
    err = p.stderr.read()
    assert p.wait() == 0, err
    assert len(list((out / "records").glob("*.json"))) == 18 and len(pd.read_csv(out / "runs.csv")) == 18


def test_lbfgs_runs_never_share_a_stack(tmp_path):
    # lbfgs is full-batch like gd, yet stacks with neither gd nor another lbfgs run
    grid = "{optimizer.name: [sgd, adam, gd, lbfgs]}"
    exp = experiment(grid=grid)
    stacks = plan_stacks(exp.runs, "auto", 1, exp.datasets)
    by_name = {}
    for st in stacks:
        by_name.setdefault(st[0].config["optimizer"]["name"], []).append(len(st))
        assert len({s.config["optimizer"]["name"] == "lbfgs" for s in st}) == 1
    assert by_name == {"sgd": [4], "gd": [2], "lbfgs": [1, 1]}  # sgd's stack: sgd and adam, batch 16
    cfg = tmp_path / "c.yaml"  # the same sweep without adam, through the CLI
    cfg.write_text(experiment_yaml("{name: mlp, hidden: [8]}", grid.replace("adam, ", ""), "[0, 1]"))
    r = runner.invoke(app, ["run", str(cfg), "--out", str(tmp_path / "o"), "-q", "-j", "1", "--stack", "auto"])
    assert r.exit_code == 0, r.output
    runs = pd.read_csv(tmp_path / "o" / "runs.csv")
    assert set(runs.status) == {"ok"} and len(runs) == 6
    assert runs.groupby("optimizer.name")["stack_size"].agg(set).to_dict() == {"sgd": {2}, "gd": {2}, "lbfgs": {1}}
    history = pd.read_csv(tmp_path / "o" / "history.csv").merge(runs[["run_id", "optimizer.name"]], on="run_id")
    steps = history.groupby("optimizer.name")["step"].max().to_dict()
    assert steps["lbfgs"] == steps["gd"] == 2 and steps["sgd"] == 2 * 9  # 140 training samples, batch 16
