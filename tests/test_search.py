"""search: seeded scrambled Halton / random trials, their expansion, validation and views."""

import copy
import io
import math

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from lossbench.cli import app
from lossbench.errors import ConfigError
from lossbench.sweep import search
from lossbench.sweep.config import load_experiment

runner = CliRunner()

BASE = {
    "name": "tiny-search",
    "dataset": {"name": "moons", "n_samples": 200, "noise": 0.25},
    "model": {"name": "mlp", "hidden": [8]},
    "loss": "cross_entropy",
    "optimizer": {"name": "sgd", "lr": 0.1},
    "train": {"epochs": 3, "batch_size": 32},
    "seeds": [0, 1],
    "search": {"trials": 4, "space": {"optimizer.lr": {"low": 1.0e-3, "high": 1.0, "scale": "log"},
                                      "optimizer.momentum": {"low": 0.8, "high": 0.99}}},
}


def config(**changes) -> dict:
    cfg = copy.deepcopy(BASE)
    cfg.update(changes)
    return cfg


def write(tmp_path, cfg, name="s.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


# ---------- the sequences ----------


def test_unscrambled_halton_is_the_textbook_van_der_corput_sequence():
    pts = search.halton(7, 2, seed=0, scramble=False, skip=0)
    assert pts[:, 0].tolist() == [1 / 2, 1 / 4, 3 / 4, 1 / 8, 5 / 8, 3 / 8, 7 / 8]
    assert np.allclose(pts[:, 1], [1 / 3, 2 / 3, 1 / 9, 4 / 9, 7 / 9, 2 / 9, 5 / 9])


def test_scrambled_halton_by_hand():
    """Index 101 + t in base 2 (digits 0 and 1 are kept: the only permutation of {1}), plus
    the dimension's seeded shift, mod 1."""
    rng = np.random.default_rng(np.random.SeedSequence(7, spawn_key=(0, 0)))
    rng.permutation(np.arange(1, 2))
    shift = rng.random()
    # 101 = 0b1100101 -> mirrored 0.1010011 = 1/2 + 1/8 + 1/64 + 1/128
    want = math.fmod(1 / 2 + 1 / 8 + 1 / 64 + 1 / 128 + shift, 1.0)
    assert search.halton(1, 1, seed=7)[0, 0] == pytest.approx(want, abs=1e-15)
    assert search.primes(6) == [2, 3, 5, 7, 11, 13]


@pytest.mark.parametrize("draw", [search.halton, search.uniform])
def test_points_are_in_the_unit_cube_distinct_seeded_and_prefix_stable(draw):
    pts = draw(64, 4, 3)
    assert pts.shape == (64, 4) and (pts >= 0).all() and (pts < 1).all()
    assert len({tuple(p) for p in pts}) == 64
    assert np.array_equal(draw(64, 4, 3), pts)  # same seed, same points
    assert np.array_equal(draw(16, 4, 3), pts[:16])  # trial i does not depend on how many
    assert not np.array_equal(draw(64, 4, 4), pts)  # another seed, other points


def test_halton_projections_are_far_more_uniform_than_random_points():
    def discrepancy(x):  # Kolmogorov-Smirnov distance to the uniform distribution
        x = np.sort(x)
        n = len(x)
        return max((np.arange(1, n + 1) / n - x).max(), (x - np.arange(n) / n).max())

    h, u = search.halton(64, 4, 0), search.uniform(64, 4, 0)
    dh = [discrepancy(h[:, d]) for d in range(4)]
    du = [discrepancy(u[:, d]) for d in range(4)]
    assert max(dh) < 0.06, dh  # random points: about 0.1 (1.36/sqrt(64) at 95%)
    assert max(dh) < min(du) / 2, (dh, du)


def test_values_map_the_unit_coordinate_to_the_range():
    log = search.check_dimension("k", {"low": 1e-4, "high": 1e-1, "scale": "log"})
    assert search.value(log, 0.0) == 1e-4 and search.value(log, 0.5) == 0.003162  # 4 significant digits
    lin = search.check_dimension("k", {"low": 0.8, "high": 0.99})
    assert search.value(lin, 0.5) == 0.895 and search.value(lin, 0.99999) == 0.99
    ints = search.check_dimension("k", {"low": 2, "high": 5, "type": "int"})
    assert [search.value(ints, u) for u in (0.0, 0.24, 0.25, 0.99)] == [2, 2, 3, 5]
    assert [search.value(["sgd", "adam", "rmsprop"], u) for u in (0.0, 0.34, 0.67, 0.999)] == \
        ["sgd", "adam", "rmsprop", "rmsprop"]


# ---------- the experiment ----------


def test_trials_are_cells_and_columns_and_the_same_config_gives_the_same_runs():
    exp = load_experiment(config())
    assert len(exp.runs) == 8 and exp.trials == 4
    assert exp.swept == ["optimizer.lr", "optimizer.momentum"]
    lrs = [c["optimizer.lr"] for c in exp.cells]
    assert all(1e-3 <= lr <= 1 and float(f"{lr:.4g}") == lr for lr in lrs) and len(set(lrs)) == 4
    assert [s.config["optimizer"]["lr"] for s in exp.runs[::2]] == lrs
    assert [s.run_id for s in load_experiment(config()).runs] == [s.run_id for s in exp.runs]


def test_raising_trials_keeps_the_earlier_runs():
    eight = load_experiment(config(), ["search.trials=8"])
    sixteen = load_experiment(config(), ["search.trials=16"])
    assert [s.run_id for s in sixteen.runs[:16]] == [s.run_id for s in eight.runs]
    other = load_experiment(config(), ["search.trials=8", "search.seed=1"])
    assert not {s.run_id for s in other.runs} & {s.run_id for s in eight.runs}
    rnd = load_experiment(config(), ["search.method=random"])
    assert not {s.run_id for s in rnd.runs} & {s.run_id for s in eight.runs}
    assert [s.run_id for s in load_experiment(config(), ["search.method=random", "search.trials=2"]).runs] == \
        [s.run_id for s in rnd.runs[:4]]


def test_grid_times_search_and_a_list_of_blocks_is_the_union():
    cfg = config(grid={"loss": ["cross_entropy", "mse"]},
                 search=[{"trials": 3, "space": {"optimizer.name": ["sgd"],
                                                 "optimizer.lr": {"low": 0.01, "high": 1, "scale": "log"},
                                                 "optimizer.momentum": {"low": 0.5, "high": 0.9}}},
                         {"trials": 2, "method": "random", "space": {"optimizer.name": ["adam"],
                                                                     "optimizer.lr": {"low": 1e-4, "high": 1e-2}}}])
    exp = load_experiment(cfg)
    assert exp.trials == 5 and len(exp.cells) == 10 and len(exp.runs) == 20
    names = [(c["loss.name"], c["optimizer.name"]) for c in exp.cells]
    assert names == [("cross_entropy", "sgd")] * 3 + [("cross_entropy", "adam")] * 2 + \
        [("mse", "sgd")] * 3 + [("mse", "adam")] * 2
    assert all("optimizer.momentum" not in c for c in exp.cells if c["optimizer.name"] == "adam")
    # the space as a list shares one block's settings: each space gets `trials` trials
    spaces = config(search={"trials": 3, "space": [cfg["search"][0]["space"],
                                                   {"optimizer.name": ["adam"], "optimizer.lr": {"low": 1e-4,
                                                                                                 "high": 1e-2}}]})
    listed = load_experiment(spaces, ["search.trials=4"])
    assert len(listed.runs) == 16 and [c["optimizer.name"] for c in listed.cells] == ["sgd"] * 4 + ["adam"] * 4


def test_a_grid_of_optimizers_with_a_searched_lr_sets_the_lr_after_the_grid():
    cfg = config(grid={"optimizer": [{"name": "sgd", "momentum": 0.9}, {"name": "adam"}]},
                 search={"trials": 2, "space": {"optimizer.lr": {"low": 1e-3, "high": 1e-1, "scale": "log"}}})
    exp = load_experiment(cfg)
    assert len(exp.runs) == 8
    assert [s.config["optimizer"] for s in exp.runs[::2]][:2] == \
        [{"name": "sgd", "momentum": 0.9, "lr": exp.cells[0]["optimizer.lr"]},
         {"name": "sgd", "momentum": 0.9, "lr": exp.cells[1]["optimizer.lr"]}]


BAD = [
    ({"search": {"trials": 4, "space": {"optimizer.lr": {"low": 0, "high": 1, "scale": "log"}}}},
     "s.yaml: search.space.optimizer.lr.low: must be > 0 for scale log, got 0"),
    ({"search": {"trials": 4, "space": {"optimizer.lr": {"low": 0.1, "high": 0.01}}}},
     "s.yaml: search.space.optimizer.lr.high: must be > low (0.1), got 0.01"),
    ({"search": {"trials": 0, "space": {"optimizer.lr": {"low": 0.1, "high": 1}}}},
     "s.yaml: search.trials: must be an integer >= 1, got 0"),
    ({"search": {"trials": 2, "method": "grid", "space": {"optimizer.lr": {"low": 0.1, "high": 1}}}},
     "s.yaml: search.method: must be one of ['halton', 'random'], got 'grid'"),
    ({"search": {"trails": 2, "space": {"optimizer.lr": {"low": 0.1, "high": 1}}}},
     "s.yaml: search.trails: unknown option (search takes space, trials, method, seed), got 2 "
     "(did you mean 'trials'?)"),
    ({"search": {"trials": 2, "space": {"optimizer.lr": {"low": 0.1, "high": 1, "scale": "exp"}}}},
     "s.yaml: search.space.optimizer.lr.scale: must be one of ['linear', 'log'], got 'exp'"),
    ({"search": {"trials": 2, "space": {"optimiser.lr": {"low": 0.1, "high": 1}}}},
     "s.yaml: search.space.optimiser.lr: points nowhere: a search key starts with one of ['dataset', 'model', "
     "'loss', 'optimizer', 'train'], got 'optimiser.lr' (did you mean 'optimizer'?)"),
    ({"search": {"trials": 2, "space": {"train.epochs": {"low": 1.5, "high": 4, "type": "int"}}}},
     "s.yaml: search.space.train.epochs.low: must be an integer for type int, got 1.5"),
    ({"search": {"trials": 2, "space": {"optimizer.lr": []}}},
     "s.yaml: search.space.optimizer.lr: must be a non-empty list of choices or a range {low, high, scale}, got []"),
    ({"grid": {"optimizer.lr": [0.1]}, "search": {"trials": 2, "space": {"optimizer.lr": {"low": 0.1, "high": 1}}}},
     "s.yaml: search.space.optimizer.lr: the grid sets optimizer.lr too; sweep it in the grid or search it, not "
     'both, got {"low": 0.1, "high": 1}'),
    ({"optimizer": "adam"},  # every trial's config is validated: adam has no momentum
     "s.yaml: optimizer.momentum: unknown option (optimizer 'adam' takes lr, betas, eps, weight_decay, amsgrad, "
     "decoupled_weight_decay), got 0.9302 (search trial 0: optimizer.lr=0.004372, optimizer.momentum=0.9302)"),
]


@pytest.mark.parametrize(("changes", "message"), BAD, ids=range(len(BAD)))
def test_a_bad_search_is_one_line_naming_file_and_key_exit_2(tmp_path, monkeypatch, changes, message):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, config(**changes))
    with pytest.raises(ConfigError) as e:
        load_experiment("s.yaml")
    assert str(e.value) == message
    r = runner.invoke(app, ["run", "s.yaml", "--dry-run"])
    assert r.exit_code == 2 and r.output == f"error: {message}\n" and r.exception is not None


def test_set_reaches_inside_the_search_and_is_refused_where_the_search_overwrites(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, config())
    exp = load_experiment("s.yaml", ["search.space.optimizer.lr.low=0.5", "search.trials=3"])
    assert len(exp.cells) == 3 and all(c["optimizer.lr"] >= 0.5 for c in exp.cells)
    r = runner.invoke(app, ["run", "s.yaml", "--dry-run", "--set", "optimizer.lr=0.3"])
    assert r.exit_code == 2 and r.output == (
        "error: s.yaml: --set optimizer.lr: the search sets optimizer.lr, which replaces it in every trial; "
        "change the search instead (--set search.space.optimizer.lr=...)\n")
    r = runner.invoke(app, ["run", "s.yaml", "--dry-run", "--set", "search.trials=3"])
    assert r.exit_code == 0, r.output
    assert "1 grid cell × 3 search trials × 2 seeds = 6 runs" in r.output
    u = search.halton(1, 2, 0)[0, 0]  # the first trial's lr: 10^(-3 + 3u), 4 significant digits
    assert f"│ {float(f'{10 ** (-3 + 3 * u):.4g}')} " in r.output


# ---------- running, resuming, views ----------


def run(path, out, *args):
    r = runner.invoke(app, ["run", str(path), "--out", str(out), "-q", *args])
    assert r.exit_code == 0, r.output
    return pd.read_csv(out / "runs.csv")


def test_widening_trains_only_the_new_trials_and_workers_do_not_change_results(tmp_path):
    path = write(tmp_path, config())
    one = run(path, tmp_path / "one", "-j", "1", "--set", "search.trials=2")
    assert len(one) == 4
    wide = run(path, tmp_path / "one", "-j", "1")
    assert len(wide) == 8
    before = one.set_index("run_id")
    kept = wide.set_index("run_id").loc[before.index]
    assert kept["wall_time_s"].tolist() == before["wall_time_s"].tolist()  # not trained again
    two = run(path, tmp_path / "two", "-j", "2")
    cols = ["optimizer.lr", "optimizer.momentum", "seed", "status", "final_train_loss", "final_val_loss",
            "best_val_accuracy"]
    a = wide.sort_values("run_id").reset_index(drop=True)[["run_id", *cols]]
    b = two.sort_values("run_id").reset_index(drop=True)[["run_id", *cols]]
    pd.testing.assert_frame_equal(a, b, check_exact=True)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hp")
    cfg = config(search={"trials": 6, "space": [
        {"optimizer.name": ["sgd"], "optimizer.lr": {"low": 1e-3, "high": 1.0, "scale": "log"},
         "optimizer.momentum": {"low": 0.5, "high": 0.95}},
        {"optimizer.name": ["adam"], "optimizer.lr": {"low": 1e-4, "high": 1e-1, "scale": "log"}}]})
    run(write(tmp, cfg), tmp / "r", "-j", "1")
    return tmp / "r"


def test_compare_hp_is_the_metric_per_value_grouped_by_the_chosen_name(results):
    r = runner.invoke(app, ["compare", str(results), "--hp", "optimizer.lr", "--format", "csv"])
    assert r.exit_code == 0, r.output
    table = pd.read_csv(io.StringIO(r.stdout))
    assert sorted(table["group"]) == ["adam", "sgd"]
    runs = pd.read_csv(results / "runs.csv")
    for _, row in table.iterrows():
        mine = runs[runs["optimizer.name"] == row["group"]]
        want = mine.groupby("optimizer.lr")["best_val_accuracy"].mean().sort_index()
        assert yaml.safe_load(row["lrs"]) == want.index.tolist()
        assert yaml.safe_load(row["values"]) == pytest.approx(want.tolist())
        assert row["best"] == pytest.approx(want.max())
    lr = runner.invoke(app, ["compare", str(results), "--lr", "--format", "csv"])
    assert lr.exit_code == 0 and lr.stdout == r.stdout  # --lr is --hp optimizer.lr
    m = runner.invoke(app, ["compare", str(results), "--hp", "optimizer.momentum"])
    assert m.exit_code == 0 and "optimizer.momentum sensitivity" in m.stdout and "sgd" in m.stdout
    bad = runner.invoke(app, ["compare", str(results), "--hp", "optimizer.name"])
    assert bad.exit_code == 2 and bad.output.splitlines()[-1] == (
        "error: --hp optimizer.name: takes values that are not numbers (e.g. sgd); compare them with --by "
        "optimizer.name")


def test_plot_hp_draws_a_log_axis_for_a_log_searched_key(results, monkeypatch):
    import matplotlib.pyplot as plt

    from lossbench.analysis import plots

    axes = []
    monkeypatch.setattr(plots, "save", lambda fig, path: axes.extend(fig.axes) or path)
    for key, scale in (("optimizer.lr", "log"), ("optimizer.momentum", "linear")):
        axes.clear()
        r = runner.invoke(app, ["plot", str(results), "--kind", "hp", "--hp", key])
        assert r.exit_code == 0, r.output
        (ax,) = axes
        assert ax.get_xscale() == scale and ax.get_xlabel().startswith(key)
        labels = ax.get_legend_handles_labels()[1]
        assert labels == (["sgd", "adam"] if key == "optimizer.lr" else ["sgd"])
        n_points = sum(len(line.get_xdata()) for line in ax.get_lines() if line.get_label() in labels)
        assert n_points == (12 if key == "optimizer.lr" else 6)  # one point per trial
        plt.close("all")


def test_a_trial_in_a_list_names_its_block_and_space(tmp_path):
    cfg = config(search=[{"trials": 1, "space": {"optimizer.lr": {"low": 0.1, "high": 1}}},
                         {"trials": 2, "space": [{"optimizer.lr": {"low": 0.1, "high": 1}},
                                                 {"optimizer.name": ["adam"], "optimizer.momentum": {"low": 0.1,
                                                                                                     "high": 0.5}}]}])
    with pytest.raises(ConfigError, match=r"^config: optimizer\.momentum: unknown option .* \(search\[1\]\.space\[1\] "
                                          r"trial 0: optimizer\.name='adam', optimizer\.momentum=0\.\d+\)$"):
        load_experiment(cfg)


def test_plot_hp_on_a_grid_is_log_only_over_two_decades_and_views_do_not_mix(tmp_path, monkeypatch):
    from lossbench.analysis import plots

    axes = []
    monkeypatch.setattr(plots, "save", lambda fig, path: axes.extend(fig.axes) or path)
    for lrs, scale in (([0.001, 0.01, 0.1, 1.0], "log"), ([0.05, 0.1, 0.2], "linear")):
        out = tmp_path / scale
        run(write(tmp_path, config(search=None, seeds=[0], grid={"optimizer.lr": lrs})), out, "-j", "1")
        axes.clear()
        r = runner.invoke(app, ["plot", str(out), "--kind", "hp"])
        assert r.exit_code == 0, r.output
        assert axes[0].get_xscale() == scale
    for args, message in ((["--lr", "--hp", "optimizer.momentum"], "error: --lr is --hp optimizer.lr; give one of "
                                                                  "them, got --lr and --hp optimizer.momentum"),
                          (["--profile", "--hp", "optimizer.lr"], "error: --profile and --hp are two different "
                                                                  "views; choose one")):
        r = runner.invoke(app, ["compare", str(tmp_path / "log"), *args])
        assert r.exit_code == 2 and r.output.splitlines()[-1] == message
