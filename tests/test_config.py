"""Config validation and grid expansion: a table of malformed configs, each one line
naming the file and the key, exit code 2, no traceback, nothing written."""

import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lossbench.cli import app
from lossbench.sweep.config import load_experiment
from lossbench.errors import ConfigError

BASE = """\
name: t
dataset: {name: moons, n_samples: 200}
model: {name: mlp, hidden: [8]}
loss: cross_entropy
optimizer: {name: sgd, lr: 0.1}
train: {epochs: 2, batch_size: 32}
"""


def write(tmp_path, text, name="c.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


# (config text, substring the one-line message must contain: the key or the problem)
MALFORMED = [
    ("", "empty"),
    ("dataset: [unclosed\n", "invalid YAML at line"),
    ("- a\n- b\n", "top level must be a mapping"),
    (BASE + "optimiser: adam\n", "optimiser: unknown section (did you mean 'optimizer'?)"),
    ("dataset: moons\nmodel: mlp\nloss: mse\n", "optimizer: missing section"),
    (BASE.replace("name: moons", "name: moonz"), "unknown dataset 'moonz' (did you mean 'moons'?)"),
    (BASE.replace("name: mlp", "name: mpl"), "unknown model 'mpl'"),
    (BASE.replace("loss: cross_entropy", "loss: crossentropy"), "unknown loss 'crossentropy' (did you mean 'cross_entropy'?)"),
    (BASE.replace("name: sgd", "name: adamw2"), "unknown optimizer 'adamw2'"),
    (BASE.replace("hidden: [8]", "hidden: [8], activation: relux"), "model.activation"),
    (BASE.replace("epochs: 2", "epochs: 2, schedule: {name: cosinus}"), "unknown schedule 'cosinus' (did you mean 'cosine'?)"),
    (BASE.replace("lr: 0.1", "lr: 0.1, betas: [0.9, 0.99]"), "optimizer 'sgd' does not take 'betas'"),
    (BASE.replace("loss: cross_entropy", "loss: {name: huber, beta: 1}"), "loss 'huber' does not take 'beta'"),
    (BASE.replace("lr: 0.1", "lr: fast"), "optimizer.lr: must be a number, got 'fast'"),
    (BASE.replace("lr: 0.1", "lr: -0.1"), "optimizer.lr: must be > 0, got -0.1"),
    (BASE.replace("name: sgd, lr: 0.1", "name: adam, betas: [1.5, 0.9]"), "betas"),
    (BASE.replace("epochs: 2", "epochs: 0"), "train.epochs: must be an integer >= 1, got 0"),
    (BASE.replace("batch_size: 32", "batch_size: 0"), "train.batch_size"),
    (BASE.replace("hidden: [8]", "hidden: [8, -4]"), "model.hidden"),
    (BASE.replace("n_samples: 200", "n_samples: 200, val_fraction: 1.5"), "val_fraction"),
    (BASE.replace("epochs: 2", "epochs: 2, epoch: 3"), "train.epoch: unknown key (did you mean 'epochs'?)"),
    (BASE + "grid: {optimizer.lrr: [0.1]}\n", "optimizer 'sgd' does not take 'lrr' (did you mean 'lr'?)"),
    (BASE + "grid: {optimiser.lr: [0.1]}\n", "grid.optimiser.lr: points nowhere"),
    (BASE + "grid: {optimizer.lr: 0.1}\n", "grid.optimizer.lr: must be a non-empty list"),
    (BASE + "grid: {optimizer.lr: []}\n", "grid.optimizer.lr: must be a non-empty list"),
    (BASE + "seeds: [0, one]\n", "seeds: must be integers >= 0, got 'one'"),
    (BASE + "seeds: []\n", "seeds: must be a non-empty list"),
    (BASE.replace("name: moons, n_samples: 200", "name: regression"), "needs a classification dataset"),
    (BASE + "target: {metric: val_r2, value: 0.9}\n", "target.metric: must be one of"),
    (BASE + "target: {metric: val_accuracy, value: high}\n", "target.value: must be a number"),
    (BASE.replace("name: moons, n_samples: 200", "name: csv, path: nowhere.csv"), "nowhere.csv"),
    (BASE + "x: !!python/object/apply:os.system ['echo pwned']\n", "YAML tags"),
    (BASE.replace("name: t", "name: ../escape"), "name: must be a plain name"),
    (BASE.replace("name: t", "name: a/b"), "name: must be a plain name"),
    (BASE.replace("lr: 0.1", "lr: 0.1, nesterov: 'yes'"), "optimizer.nesterov: must be true or false"),
    (BASE.replace("epochs: 2", "epochs: 2, early_stopping: {monitor: val_acc}"), "train.early_stopping.monitor"),
    (BASE.replace("loss: cross_entropy", "loss: {delta: 1.0}"), "loss.name: missing"),
    (BASE + "grid: [{optimizer.lr: [0.1]}, 7]\n", "grid[1]: must be a mapping"),
]


@pytest.mark.parametrize("text,expected", MALFORMED, ids=[f"{i:02d}-{e[:30]}" for i, (_, e) in enumerate(MALFORMED)])
def test_malformed_config_is_one_clear_line(tmp_path, text, expected, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = write(tmp_path, text)
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["run", str(cfg), "--out", str(out)])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and (r.exception is None or isinstance(r.exception, SystemExit))
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1, r.output
    assert lines[0].startswith(f"error: {cfg}: "), lines[0]
    assert expected in lines[0], lines[0]
    assert not out.exists()  # nothing half-written
    assert not (tmp_path / "results").exists()


def test_validate_command_uses_the_same_checks(tmp_path):
    cfg = write(tmp_path, BASE.replace("lr: 0.1", "lr: 0"))
    r = CliRunner().invoke(app, ["validate", str(cfg)])
    assert r.exit_code == 2 and "optimizer.lr: must be > 0, got 0" in r.output


def test_grid_sizes_unions_and_whole_subconfigs(tmp_path):
    cfg = write(tmp_path, BASE + """\
seeds: [0, 1, 2]
grid:
  - optimizer: [{name: sgd, lr: 0.1, momentum: 0.9}, {name: adam}]
    model.hidden: [[8], [16, 8]]
  - optimizer.name: [rmsprop]
    optimizer.lr: [0.01, 0.001, 0.0001]
""")
    exp = load_experiment(cfg)
    assert len(exp.cells) == 2 * 2 + 3 and len(exp.runs) == 7 * 3
    assert exp.swept == ["optimizer.name", "optimizer.lr", "optimizer.momentum", "model.hidden"]
    adam = [r for r in exp.runs if r.config["optimizer"]["name"] == "adam"]
    assert adam[0].config["optimizer"] == {"name": "adam"}  # the whole sub-config replaced the base
    rms = [r.config["optimizer"]["lr"] for r in exp.runs if r.config["optimizer"]["name"] == "rmsprop"]
    assert sorted(set(rms)) == [0.0001, 0.001, 0.01]
    assert len({r.run_id for r in exp.runs}) == len(exp.runs)


def test_overlapping_grids_train_each_run_once(tmp_path):
    cfg = write(tmp_path, BASE + "grid: [{optimizer.lr: [0.1, 0.2]}, {optimizer.lr: [0.2, 0.3]}]\n")
    assert len(load_experiment(cfg).runs) == 3


def test_run_ids_are_stable_and_only_depend_on_the_run(tmp_path):
    a = load_experiment(write(tmp_path, BASE + "grid: {optimizer.lr: [0.1, 0.01]}\n", "a.yaml"))
    b = load_experiment(write(tmp_path, BASE + "grid: {optimizer.lr: [0.01, 0.1, 0.001]}\n", "b.yaml"))
    ids_a = {r.cell["optimizer.lr"]: r.run_id for r in a.runs}
    ids_b = {r.cell["optimizer.lr"]: r.run_id for r in b.runs}
    assert ids_a[0.1] == ids_b[0.1] and ids_a[0.01] == ids_b[0.01]  # widening reuses ids
    assert a.runs[0].run_id == load_experiment(tmp_path / "a.yaml").runs[0].run_id
    assert len(a.runs[0].run_id) == 12


def test_set_overrides_apply_before_validation(tmp_path):
    cfg = write(tmp_path, BASE)
    exp = load_experiment(cfg, ["optimizer.lr=0.5", "loss.label_smoothing=0.1", "seeds=[3, 4]", "train.batch_size=full"])
    spec = exp.runs[0]
    assert spec.config["optimizer"]["lr"] == 0.5
    assert spec.config["loss"] == {"name": "cross_entropy", "label_smoothing": 0.1}
    assert [r.seed for r in exp.runs] == [3, 4] and spec.config["train"]["batch_size"] == "full"
    with pytest.raises(ConfigError, match=r"c\.yaml: optimizer\.lr: must be > 0, got -1"):
        load_experiment(cfg, ["optimizer.lr=-1"])
    with pytest.raises(ConfigError, match="--set: expected key=value"):
        load_experiment(cfg, ["optimizer.lr"])


def test_default_name_is_the_file_stem(tmp_path):
    cfg = write(tmp_path, BASE.replace("name: t\n", ""), "my-exp.yaml")
    assert load_experiment(cfg).name == "my-exp"
