"""Config validation and grid expansion: a table of malformed configs, each one line
naming the file and the key, exit code 2, no traceback, nothing written."""

import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lossbench.cli import app
from lossbench.errors import ConfigError
from lossbench.sweep.config import load_experiment

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
    (BASE + "optimiser: adam\n", "optimiser: unknown section (sections are name, dataset, model, loss, optimizer, "
                                  "train, seeds, grid, search, target, prune), got 'adam' (did you mean 'optimizer'?)"),
    ("dataset: moons\nmodel: mlp\nloss: mse\n", "optimizer: missing section"),
    (BASE.replace("name: moons", "name: moonz"),
     "dataset.name: must be one of ['beale', 'blobs', 'branin', 'counts', 'csv', 'fashion_mnist', 'heteroscedastic', "
     "'mnist', 'moons', 'quadratic', 'regression', 'rosenbrock', 'saddle', 'spirals'], "
     "got 'moonz' (did you mean 'moons'?)"),
    (BASE.replace("name: mlp", "name: mpl"),
     "model.name: must be one of ['2c2d', 'cnn', 'lenet5', 'linear', 'mlp'], got 'mpl' (did you mean 'mlp'?)"),
    (BASE.replace("loss: cross_entropy", "loss: crossentropy"), "got 'crossentropy' (did you mean 'cross_entropy'?)"),
    (BASE.replace("name: sgd", "name: adamw2"), "optimizer.name: must be one of ['adadelta', "),
    (BASE.replace("hidden: [8]", "hidden: [8], activation: relux"),
     "model.activation: must be one of ['relu', 'leaky_relu', 'tanh', 'sigmoid', 'gelu'], "
     "got 'relux' (did you mean 'relu'?)"),
    (BASE.replace("epochs: 2", "epochs: 2, schedule: {name: cosinus}"),
     "train.schedule.name: must be one of ['constant', 'cosine', 'exponential', 'reduce_on_plateau', 'step', "
     "'warmup_cosine'], got 'cosinus' (did you mean 'cosine'?)"),
    (BASE.replace("lr: 0.1", "lr: 0.1, betas: [0.9, 0.99]"),
     "optimizer.betas: unknown option (optimizer 'sgd' takes lr, momentum, dampening, weight_decay, nesterov), "
     "got [0.9, 0.99]"),
    (BASE.replace("loss: cross_entropy", "loss: {name: huber, beta: 1}"),
     "loss.beta: unknown option (loss 'huber' takes delta), got 1 (did you mean 'delta'?)"),
    (BASE.replace("lr: 0.1", "lr: fast"), "optimizer.lr: must be a number > 0, got 'fast'"),
    (BASE.replace("lr: 0.1", "lr: '0.1'"), "optimizer.lr: must be a number > 0, got '0.1'"),  # a string is not a number
    (BASE.replace("lr: 0.1", "lr: -0.1"), "optimizer.lr: must be a number > 0, got -0.1"),
    (BASE.replace("lr: 0.1", "lr: .nan"), "optimizer.lr: must be a number > 0, got NaN"),
    (BASE.replace("lr: 0.1", "lr: .inf"), "optimizer.lr: must be a number > 0, got Infinity"),
    (BASE.replace("name: sgd, lr: 0.1", "name: adam, betas: [1.5, 0.9]"),
     "optimizer.betas[0]: must be a number in [0, 1), got 1.5"),
    (BASE.replace("name: sgd, lr: 0.1", "name: adam, betas: 0.9"),
     "optimizer.betas: must be a list of 2 numbers in [0, 1), got 0.9"),
    (BASE.replace("epochs: 2", "epochs: 0"), "train.epochs: must be an integer >= 1, got 0"),
    (BASE.replace("epochs: 2", "epochs: 2.0"), "train.epochs: must be an integer >= 1, got 2.0"),
    (BASE.replace("batch_size: 32", "batch_size: 0"),
     "train.batch_size: must be an integer >= 1 or 'full', got 0"),
    (BASE.replace("hidden: [8]", "hidden: [8, -4]"), "model.hidden[1]: must be an integer >= 1, got -4"),
    (BASE.replace("n_samples: 200", "n_samples: 200, val_fraction: 1.5"),
     "dataset.val_fraction: must be a number in [0, 1), got 1.5"),
    (BASE.replace("epochs: 2", "epochs: 2, epoch: 3"),
     "train.epoch: unknown option (train takes epochs, batch_size, shuffle, schedule, clip_grad_norm, early_stopping, "
     "save_params), "
     "got 3 (did you mean 'epochs'?)"),
    (BASE + "grid: {optimizer.lrr: [0.1]}\n",
     "optimizer.lrr: unknown option (optimizer 'sgd' takes lr, momentum, dampening, weight_decay, nesterov), "
     "got 0.1 (did you mean 'lr'?) (grid cell optimizer.lrr=0.1)"),
    (BASE + "grid: {optimiser.lr: [0.1]}\n", "grid.optimiser.lr: points nowhere"),
    (BASE + "grid: {optimizer.lr: 0.1}\n", "grid.optimizer.lr: must be a non-empty list"),
    (BASE + "grid: {optimizer.lr: []}\n", "grid.optimizer.lr: must be a non-empty list"),
    (BASE + "seeds: [0, one]\n", "seeds[1]: must be an integer >= 0, got 'one'"),
    (BASE + "seeds: []\n", "seeds: must be a non-empty list of integers >= 0, got []"),
    (BASE + "seeds: 1.0\n", "seeds: must be a non-empty list of integers >= 0, got 1.0"),
    (BASE + "seeds: 3\n", "seeds: must be a list: [0, 1, 2] for 3 seeds, or [3] for seed 3, got 3"),
    (BASE + "seeds: 1\n", "seeds: must be a list: [1] for seed 1, got 1"),
    (BASE + "seeds: [1, 1]\n", "seeds: must not repeat a value, got [1, 1]"),
    (BASE.replace("name: moons, n_samples: 200", "name: regression"),
     "loss.name: must be a regression loss on the regression dataset 'regression' (one of ['gaussian_nll', 'huber', "
     "'log_cosh', 'mae', 'mse', 'poisson_nll', 'quantile', 'smooth_l1']), got 'cross_entropy'"),
    (BASE + "target: {metric: val_r2, value: 0.9}\n", "target.metric: must be one of ['val_loss', 'val_accuracy', "
                                                        "'train_loss'] for a classification dataset, got 'val_r2'"),
    (BASE + "target: {metric: val_accuracy, value: high}\n", "target.value: must be a number, got 'high'"),
    (BASE + "target: {metric: val_accuracy, valu: 0.9}\n", "target.valu: unknown option (target takes metric, value), "
                                                            "got 0.9 (did you mean 'value'?)"),
    (BASE + "target: {metric: val_accuracy}\n", "target.value: required by target (a number), got nothing"),
    (BASE.replace("name: moons, n_samples: 200", "name: csv, path: nowhere.csv"),
     "dataset.path: no such file, got 'nowhere.csv'"),
    (BASE.replace("name: moons, n_samples: 200", "name: csv"),
     "dataset.path: required by dataset 'csv' (a string), got nothing"),
    (BASE + "x: !!python/object/apply:os.system ['echo pwned']\n", "YAML tags"),
    (BASE.replace("name: t", "name: ../escape"), "name: must be a plain name"),
    (BASE.replace("name: t", "name: a/b"), "name: must be a plain name"),
    (BASE.replace("lr: 0.1", "lr: 0.1, nesterov: 'yes'"), "optimizer.nesterov: must be true or false, got 'yes'"),
    (BASE.replace("lr: 0.1", "lr: 0.1, nesterov: yes"),
     "optimizer.nesterov: must be true or false, got 'yes'"),  # YAML 1.2
    (BASE.replace("lr: 0.1", "lr: 0.1, nesterov: true"), "optimizer.nesterov: needs momentum > 0 and dampening = 0"),
    (BASE.replace("epochs: 2", "epochs: 2, early_stopping: {monitor: val_acc}"),
     "train.early_stopping.monitor: must be one of ['val_loss', 'val_accuracy'], "
     "got 'val_acc' (did you mean 'val_accuracy'?)"),
    (BASE.replace("epochs: 2", "epochs: 2, early_stopping: {min_delta: x}"),
     "train.early_stopping.min_delta: must be a number >= 0, got 'x'"),
    (BASE.replace("epochs: 2", "epochs: 2, early_stopping: 5"),
     "train.early_stopping: must be a mapping {monitor, patience, min_delta}, got 5"),
    (BASE.replace("epochs: 2", "epochs: 2, clip_grad_norm: x"), "train.clip_grad_norm: must be a number > 0, got 'x'"),
    (BASE.replace("n_samples: 200", "n_samples: 200, val_fraction: 0")
         .replace("epochs: 2", "epochs: 2, early_stopping: {}"),
     "dataset.val_fraction: must be > 0 when train.early_stopping or reduce_on_plateau watch the validation split, "
     "got 0"),
    (BASE.replace("loss: cross_entropy", "loss: {delta: 1.0}"), "loss.name: missing"),
    (BASE.replace("loss: cross_entropy", "loss: {name: cross_entropy, seed: 1}"),
     "loss.seed: unknown option (loss 'cross_entropy' takes label_smoothing), got 1"),
    (BASE.replace("name: sgd, lr: 0.1", "name: sgd, lr: 0.1, epochs: 3"),
     "optimizer.epochs: unknown option (optimizer 'sgd' takes lr, momentum, dampening, weight_decay, nesterov), got 3"),
    (BASE.replace("n_samples: 200", "n_samples: 200, rng: 3"),
     "dataset.rng: unknown option (dataset 'moons' takes seed, val_fraction, normalize, limit, n_samples, noise, "
     "test_fraction), got 3"),
    (BASE.replace("hidden: [8]", "hidden: [8], seed: 3"),
     "model.seed: unknown option (model 'mlp' takes hidden, activation, dropout, init), got 3"),
    (BASE.replace("name: moons, n_samples: 200", "name: mnist, mirrors: ftp://example.org/"),
     "dataset.mirrors: must be a list of http(s) base URLs or a comma-separated string of them, "
     "got 'ftp://example.org/'"),
    (BASE.replace("hidden: [8]", "hidden: [100000, 100000, 100000]"),
     "model: does not fit in memory: 20,000,700,002 parameters need 372.5 GiB for weights, gradients and sgd's "
     "buffers, this machine has"),
    (BASE.replace("lr: 0.1", "lr: 0.1\n  lr: 0.2")
         .replace("{name: sgd, lr: 0.1\n  lr: 0.2}", "\n  name: sgd\n  lr: 0.1\n  lr: 0.2"),
     "optimizer.lr: given twice in one mapping (line 7, column 3 and line 8, column 3); keep one, got '0.1' and '0.2'"),
    (BASE + "grid: [{optimizer.lr: [0.1]}, 7]\n", "grid[1]: must be a mapping"),
    (BASE.replace("{name: mlp, hidden: [8]}", "lenet5"), "model.name: must be linear or mlp on tabular data "
                                                          "(convolutional models need an image dataset: mnist, "
                                                          "fashion_mnist), got 'lenet5'"),
    (BASE + "grid:\n  optimizer.lr: [0.1, 0.01]\n  optimizer: [{name: adam}]\n",
     "grid.optimizer.lr: overlaps grid.optimizer, whose values replace the whole optimizer; set lr inside those "
     "values, got [0.1, 0.01]"),
    (BASE.replace("lr: 0.1", "lr: !!int 0.1"), "YAML tags such as !!int are not allowed at line 5, column 28"),
    (BASE.replace("lr: 0.1", "lr: 0.1, amsgrad: !!bool yes"), "YAML tags such as !!bool are not allowed"),
    (BASE.replace("epochs: 2, ", "epochs: 2,\n\tbatch: 1, "), "a tab where YAML needs spaces (indent with spaces)"),
    (BASE + "---\nname: u\n", "invalid YAML at line 7, column 1: a second YAML document ('---'); one config per file"),
    (BASE.replace("name: t", "name: 123"), "name: must be a plain name of letters, digits, '.', '_' or '-' (no '/', "
                                          "no '..'; quote one made of digits), got 123"),
    ("hello\n", "the top level must be a mapping of sections (dataset:, model:, ...), got 'hello'"),
    (BASE + "target: {metric: val_accuracy, value: 1.5}\n",
     "target.value: must be a value val_accuracy can reach, in [0, 1], got 1.5"),
    (BASE + "target: {metric: val_loss, value: -1}\n",
     "target.value: must be a value val_loss can reach, in [0, inf], got -1"),
    (BASE.replace("name: moons, n_samples: 200", "name: mnist, path: /nonexistent/mnist"),
     "dataset.path: must be a directory holding the four files train-images-idx3-ubyte, train-labels-idx1-ubyte, "
     "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (plain or .gz), got '/nonexistent/mnist'"),
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
    assert r.exit_code == 2 and "optimizer.lr: must be a number > 0, got 0" in r.output


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
    exp = load_experiment(cfg, ["optimizer.lr=0.5", "loss.label_smoothing=0.1", "seeds=[3, 4]",
                                "train.batch_size=full"])
    spec = exp.runs[0]
    assert spec.config["optimizer"]["lr"] == 0.5
    assert spec.config["loss"] == {"name": "cross_entropy", "label_smoothing": 0.1}
    assert [r.seed for r in exp.runs] == [3, 4] and spec.config["train"]["batch_size"] == "full"
    with pytest.raises(ConfigError, match=r"c\.yaml: optimizer\.lr: must be a number > 0, got -1"):
        load_experiment(cfg, ["optimizer.lr=-1"])
    with pytest.raises(ConfigError, match="--set: expected key=value"):
        load_experiment(cfg, ["optimizer.lr"])


def test_default_name_is_the_file_stem(tmp_path):
    cfg = write(tmp_path, BASE.replace("name: t\n", ""), "my-exp.yaml")
    assert load_experiment(cfg).name == "my-exp"


def test_numbers_and_booleans_are_read_as_people_write_them(tmp_path):
    """YAML 1.2's core schema, not PyYAML's 1.1: 1e-3 is a float, `yes` is a string."""
    from lossbench.sweep.config import parse_yaml

    got = parse_yaml("[1e-3, 3E-4, .5, -2.5e+2, 010, 0x1f, 0o17, yes, on, true, False, ~, null, .inf, 1_000]", "x")
    assert got[:7] == [0.001, 0.0003, 0.5, -250.0, 10, 31, 15]
    assert [type(v) for v in got[:7]] == [float, float, float, float, int, int, int]
    assert got[7:13] == ["yes", "on", True, False, None, None] and got[13] == float("inf") and got[14] == "1_000"
    exp = load_experiment(write(tmp_path, BASE.replace("lr: 0.1", "lr: 1e-3")), ["optimizer.momentum=9E-1"])
    assert exp.runs[0].config["optimizer"] == {"name": "sgd", "lr": 0.001, "momentum": 0.9}


def test_duplicate_keys_are_found_at_any_depth(tmp_path):
    text = BASE + "grid:\n  - optimizer.lr: [0.1]\n    optimizer.lr: [0.2]\n"
    with pytest.raises(ConfigError, match=r"c\.yaml: grid\[0\]\.optimizer\.lr: given twice in one mapping "
                                          r"\(line 8, column 5 and line 9, column 5\); keep one, "
                                          r"got a list and a list$"):
        load_experiment(write(tmp_path, text))
    merged = "defaults: &b {lr: 0.1}\n" + BASE.replace("{name: sgd, lr: 0.1}", "{<<: *b, name: sgd}")
    with pytest.raises(ConfigError, match="c.yaml: defaults: unknown section"):  # a merge key is no duplicate
        load_experiment(write(tmp_path, merged))


def test_config_files_that_are_not_yaml_text(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(BASE.replace("name: t", "name: caf\xe9").encode("latin-1"))
    for path, message in ((latin, "is not UTF-8 text (byte 0xe9 on line 1); save it as UTF-8"),
                          (tmp_path, "is a directory, not a config file")):
        r = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "out")])
        assert (r.exit_code, r.output) == (2, f"error: {path}: {message}\n")
    assert not (tmp_path / "out").exists()


def test_a_set_value_that_is_not_yaml_is_refused_as_the_set(tmp_path):
    r = CliRunner().invoke(app, ["validate", str(write(tmp_path, BASE)), "--set", "optimizer.lr=[0.1"])
    assert r.exit_code == 2
    assert r.output.startswith("error: --set optimizer.lr=[0.1: invalid YAML at line 1, column 5: ")


@pytest.mark.parametrize("grid,key", [
    ({"optimizer.lr": [0.1, 0.2]}, "optimizer.lr"),
    ({"optimizer": [{"name": "sgd"}, {"name": "adam"}]}, "optimizer.lr"),
    ([{"optimizer.lr": [0.1]}], "optimizer"),
])
def test_a_set_the_grid_would_overwrite_is_refused_not_ignored(grid, key):
    raw = {"dataset": "moons", "model": "linear", "loss": "cross_entropy", "optimizer": "sgd", "grid": grid}
    with pytest.raises(ConfigError, match=rf"--set {key}: the grid sets optimizer[.a-z]*, which replaces it in every"):
        load_experiment(raw, [f"{key}=0.5" if key.endswith("lr") else f"{key}=adam"])
    assert load_experiment(raw, ["train.epochs=2"]).config["train"]["epochs"] == 2  # what the grid leaves alone


def test_a_set_into_a_list_item_says_to_set_the_whole_list():
    raw = {"dataset": "moons", "model": "linear", "loss": "cross_entropy", "optimizer": "sgd"}
    with pytest.raises(ConfigError, match=r"--set optimizer.param_groups\[0\].lr: a list item cannot be set alone; "
                                          r"set the whole list, e.g. --set optimizer.param_groups=\[...\]"):
        load_experiment(raw, ["optimizer.param_groups[0].lr=0.1"])
