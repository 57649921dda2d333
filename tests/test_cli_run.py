"""`lossbench run` end to end on the shipped quickstart config."""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import lossbench
from lossbench.cli import app
from lossbench.sweep.config import load_experiment

CONFIGS = Path(__file__).parent.parent / "configs"
runner = CliRunner()


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    out = tmp_path_factory.mktemp("qs") / "out"
    r = runner.invoke(app, ["run", str(CONFIGS / "quickstart.yaml"), "--out", str(out)])
    return r, out


def test_run_writes_the_four_files_with_the_contract_columns(quickstart):
    r, out = quickstart
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir() if p.is_file() and p.name != ".lock") == [
        "config.yaml", "history.csv", "manifest.json", "runs.csv"]
    runs = pd.read_csv(out / "runs.csv")
    assert list(runs.columns) == [
        "run_id", "loss.name", "optimizer.name", "optimizer.lr", "seed", "status", "epochs", "final_train_loss",
        "final_val_loss", "best_val_loss", "best_val_accuracy", "test_loss", "test_accuracy", "epochs_to_target",
        "time_to_target_s", "wall_time_s", "n_params", "error", "stack_size"]
    assert len(runs) == 18 and (runs.status == "ok").all() and runs.run_id.is_unique
    # one small model: auto stacks its runs, spread over the workers (one per core)
    assert runs.stack_size.min() > 1
    hist = pd.read_csv(out / "history.csv")
    assert list(hist.columns) == ["run_id", "epoch", "step", "train_loss", "val_loss", "val_accuracy", "lr",
                                  "grad_norm", "elapsed_s"]
    assert len(hist) == 18 * 30 and set(hist.run_id) == set(runs.run_id)
    # epochs_to_target agrees with the history it was computed from
    row = runs.dropna(subset=["epochs_to_target"]).iloc[0]
    h = hist[hist.run_id == row.run_id]
    assert h[h.val_accuracy >= 0.9].epoch.min() == row.epochs_to_target
    man = json.loads((out / "manifest.json").read_text())
    assert man["lossbench"] == lossbench.__version__ and man["ended"] and man["numpy"]


def test_summary_names_the_best_cell_first(quickstart):
    r, out = quickstart
    lines = r.output.splitlines()
    rows = [line for line in lines if line.startswith("│ ") and line[2:4].strip().isdigit()]
    optimizer = [next(o for o in ("adam", "momentum", "sgd") if f", {o}," in row) for row in rows]
    assert optimizer == ["adam"] * 3 + ["momentum"] * 3 + ["sgd"] * 3  # the course's story, by epochs to target
    assert "18 runs: 18 ok, 0 diverged, 0 failed" in r.output
    assert "out: best val_accuracy, mean ± std over seeds" in r.output
    assert "epochs to val_accuracy ≥ 0.9" in r.output


def test_rerun_trains_nothing_new_and_show_repeats_the_summary(quickstart):
    _, out = quickstart
    before = (out / "runs.csv").read_text()
    r = runner.invoke(app, ["run", str(CONFIGS / "quickstart.yaml"), "--out", str(out)])
    assert r.exit_code == 0 and (out / "runs.csv").read_text() == before
    s = runner.invoke(app, ["show", str(out)])
    assert s.exit_code == 0 and "cross_entropy, adam, lr=0.01" in s.output


def test_python_api_returns_the_same_tables(quickstart):
    _, out = quickstart
    res = lossbench.run(CONFIGS / "quickstart.yaml", out=out)  # everything recorded: trains nothing
    pd.testing.assert_frame_equal(
        res.runs, pd.read_csv(out / "runs.csv", dtype={"error": str, "run_id": str}).fillna({"error": ""}))
    assert len(res.summary) == 9 and res.summary.iloc[0]["ok"] == 2
    # with a target, cells rank by the share of seeds reaching it, then by epochs to reach it
    s = res.summary
    top = s[s.reached == s.reached.max()]
    assert s.iloc[0]["epochs_to_target"] == top["epochs_to_target"].min() and list(s["rank"]) == list(range(1, 10))


def test_dry_run_and_validate_write_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["run", str(CONFIGS / "quickstart.yaml"), "--dry-run"])
    assert r.exit_code == 0 and "9 grid cells × 2 seeds = 18 runs" in r.output
    r = runner.invoke(app, ["validate", str(CONFIGS / "mnist.yaml")])
    assert r.exit_code == 0 and "12 grid cells × 3 seeds = 36 runs" in r.output
    assert not (tmp_path / "results").exists()


def test_failed_and_diverged_runs_are_recorded_and_the_sweep_goes_on(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("""
name: mixed
dataset: {name: moons, n_samples: 200}
model: {name: mlp, hidden: [8]}
loss: mse
optimizer: {name: sgd, lr: 0.1}
train: {epochs: 3}
grid: {optimizer.lr: [0.1, 1.0e+6]}
""")
    r = runner.invoke(app, ["run", str(cfg), "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    runs = pd.read_csv(tmp_path / "o" / "runs.csv")
    assert sorted(runs.status) == ["diverged", "ok"]
    assert "1 diverged" in r.output
    # the diverged cell is never ranked first
    assert next(line for line in r.output.splitlines() if line.startswith("│ 1 ")).count("lr=0.1") == 1


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_validates(path, monkeypatch):
    monkeypatch.chdir(CONFIGS.parent)  # as the README runs them: from the repository's root
    exp = load_experiment(path)
    assert exp.runs and exp.name


def test_the_python_api_takes_a_config_dict(tmp_path):
    cfg = {"name": "d", "dataset": {"name": "moons", "n_samples": 200}, "model": {"name": "mlp", "hidden": [8]},
           "loss": "cross_entropy", "optimizer": {"name": "adam", "lr": 0.01}, "train": {"epochs": 2},
           "grid": {"optimizer.lr": [0.01, 0.1]}}
    res = lossbench.run(cfg, out=tmp_path / "d", workers=1)
    assert res.runs["optimizer.lr"].tolist() == [0.01, 0.1] and (res.runs.status == "ok").all()
    (tmp_path / "d.yaml").write_text(yaml.safe_dump(cfg))  # the same runs as from a file
    assert [s.run_id for s in load_experiment(tmp_path / "d.yaml").runs] == res.runs.run_id.tolist()
    assert cfg["loss"] == "cross_entropy"  # the caller's dict is not modified
    with pytest.raises(lossbench.errors.ConfigError, match=r"^config: optimizer\.lr: must be a number > 0, got -1$"):
        lossbench.run({**cfg, "optimizer": {"name": "adam", "lr": -1}, "grid": None}, out=tmp_path / "x")
    with pytest.raises(lossbench.errors.ConfigError, match=r"^config: must be a YAML file's path or a config dict, "
                                                           r"got 'int'$"):
        lossbench.run(3, out=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_the_own_data_example_shows_why_features_are_normalized(monkeypatch, tmp_path):
    monkeypatch.chdir(CONFIGS.parent)
    r = runner.invoke(app, ["run", "configs/wine.yaml", "--out", str(tmp_path / "w"), "--set", "seeds=[0]",
                            "--set", "train.epochs=15", "-q", "-j", "1"])
    assert r.exit_code == 0, r.output
    runs = pd.read_csv(tmp_path / "w" / "runs.csv")
    acc = runs.groupby("dataset.normalize")["best_val_accuracy"].mean()
    assert acc["standard"] > 0.9 and acc["standard"] - acc["none"] > 0.2, acc
