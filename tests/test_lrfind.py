"""`lossbench lr-find`: the range test's schedule, smoothing and stop rule, fastai's
suggestion rules on hand-made curves, the suggestion on a problem whose stable range is
known, and the command end to end."""

import math

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from lossbench import api, data, optimizers
from lossbench.cli import app
from lossbench.engine import lrfind
from lossbench.errors import ConfigError
from lossbench.sweep.config import load_experiment
from lossbench.sweep.lrfind import _scaled

runner = CliRunner()


@pytest.fixture(scope="module")
def moons():
    return data.load("moons", n_samples=200, seed=0)


def test_the_rates_grow_exactly_exponentially_from_start_to_end():
    lrs = lrfind.lr_schedule(1e-7, 10.0, 100)
    assert len(lrs) == 100 and lrs[0] == 1e-7
    assert lrs[-1] == pytest.approx(10.0, rel=1e-12)
    np.testing.assert_allclose(lrs[1:] / lrs[:-1], 1e8 ** (1 / 99), rtol=1e-12)  # one constant ratio
    np.testing.assert_allclose(lrfind.lr_schedule(0.5, 2.0, 3), [0.5, 1.0, 2.0], rtol=1e-15)


def test_each_step_trains_at_its_rate(moons, monkeypatch):
    """The optimizer holds lr_i when step i runs (not the config's lr)."""
    seen, step = [], lrfind._step

    def spy(net, groups, runs, *args):
        seen.append(float(groups[0][0].lr[0, 0]))
        return step(net, groups, runs, *args)

    monkeypatch.setattr(lrfind, "_step", spy)
    r = lrfind.lr_find(moons, model={"name": "mlp", "hidden": [8]}, loss="cross_entropy",
                       optimizer={"name": "sgd", "lr": 0.5}, train={"batch_size": 16}, start=1e-4, end=1e-2, steps=20)
    assert len(r.lrs) == 20 and r.stopped == "end"
    np.testing.assert_allclose(seen, lrfind.lr_schedule(1e-4, 1e-2, 20), rtol=1e-15)
    np.testing.assert_allclose(r.lrs, seen, rtol=1e-15)


def test_the_smoothing_is_fastais_debiased_moving_average():
    s = lrfind.Smoother()
    got = [s.add(v)[0] for v in (1.0, 2.0, 3.0)]
    # by hand: avg1 = 0.02, avg2 = 0.98 * 0.02 + 0.04 = 0.0596, avg3 = 0.98 * 0.0596 + 0.06 = 0.118408;
    # debiased by 1 - 0.98^k = 0.02, 0.0396, 0.058808
    assert got == pytest.approx([1.0, 0.0596 / 0.0396, 0.118408 / 0.058808], rel=1e-12)
    assert got[1] == pytest.approx(1.505050505, rel=1e-9)


def test_the_curve_holds_the_smoothed_batch_losses(moons):
    r = lrfind.lr_find(moons, model={"name": "mlp", "hidden": [8]}, loss="cross_entropy", optimizer="adam",
                       train={"batch_size": 16}, start=1e-5, end=1.0, steps=40)
    avg, expected = 0.0, []
    for i, v in enumerate(r.losses):
        avg = 0.98 * avg + 0.02 * v
        expected.append(avg / (1 - 0.98 ** (i + 1)))
    np.testing.assert_allclose(r.smoothed, expected, rtol=1e-12)


def test_it_stops_at_the_first_step_whose_smoothed_loss_exceeds_4x_the_best():
    # five losses of 1, then 10s: smoothed 1 (best) ... then, by hand,
    # step 6: (0.98 * (1 - 0.98^5) + 0.2) / (1 - 0.98^6) = 0.294157 / 0.114158 = 2.577
    # step 7: (0.98 * 0.294157 + 0.2) / (1 - 0.98^7) = 0.488274 / 0.131874 = 3.703
    # step 8: (0.98 * 0.488274 + 0.2) / (1 - 0.98^8) = 0.678509 / 0.149237 = 4.547 > 4: stop there
    s = lrfind.Smoother()
    out = [s.add(v) for v in [1.0] * 5 + [10.0] * 5]
    stops = [k for k, (_, stop) in enumerate(out) if stop]
    assert stops[0] == 7
    assert [round(v, 3) for v, _ in out[5:8]] == [2.577, 3.703, 4.547]
    assert not lrfind.Smoother().add(math.inf)[0] < math.inf and lrfind.Smoother().add(math.nan)[1]
    # below zero (gaussian_nll): more than 3 |best| above the best
    s = lrfind.Smoother()
    assert not s.add(-1.0)[1] and not s.add(-1.0)[1]


def test_the_range_test_stops_where_the_rule_says(moons):
    r = lrfind.lr_find(moons, model={"name": "mlp", "hidden": [8]}, loss="cross_entropy", optimizer="sgd",
                       train={"batch_size": 16}, start=1e-3, end=1e4, steps=100)
    assert r.stopped == "diverged" and len(r.lrs) < 100
    best = np.minimum.accumulate(r.smoothed)
    above = ~np.isfinite(r.smoothed) | (r.smoothed > 4 * best)
    assert np.flatnonzero(above).tolist() == [len(r.lrs) - 1]  # the last step, and only it


# A hand-made curve: rates doubling, losses as written.
LRS = 1e-3 * 2.0 ** np.arange(10)
LOSSES = np.array([3.0, 2.8, 3.1, 2.5, 2.0, 2.2, 1.2, 1.0, 1.5, 4.0])


def test_minimum_is_a_tenth_of_the_rate_at_the_lowest_loss():
    assert lrfind.minimum(LRS, LOSSES) == (pytest.approx(0.0128), 7)  # 1.0 at 2^7 * 1e-3 = 0.128


def test_steep_is_where_the_loss_falls_fastest_per_log_lr():
    # differences -0.2, 0.3, -0.6, -0.5, 0.2, -1.0, -0.2, 0.5, 2.5 over the same log step:
    # the steepest fall is 2.2 -> 1.2, from point 5 (2^5 * 1e-3)
    assert lrfind.steep(LRS, LOSSES) == (pytest.approx(0.032), 5)
    # the slope is per log lr: the largest fall (2.5 -> 1.5) spans ln 50, so -1/3.91 = -0.26
    # per unit of log lr, less steep than 3.0 -> 2.5 over ln 2 (-0.72)
    uneven = np.array([1e-3, 2e-3, 1e-1, 2e-1])
    assert lrfind.steep(uneven, np.array([3.0, 2.5, 1.5, 1.4])) == (pytest.approx(1e-3), 0)


def test_valley_is_fastais_longest_valley_rule():
    # longest strictly decreasing subsequence ending at each point (fastai's lds):
    # 3.0:1 2.8:2 3.1:1 2.5:3 2.0:4 2.2:4 1.2:5 1.0:6 1.5:5 4.0:1 -> the first longest ends at 7, with 6 points,
    # max_start = 7 - 6 = 1; sections = 6 / 3 = 2; idx = 1 + int(2) + int(1) = 4
    assert lrfind.valley(LRS, LOSSES) == (pytest.approx(0.016), 4)
    # two equally long valleys: the first one counts; [5, 4, 3, 6, 5, 4]: lds 1 2 3 1 2 3, end 2, start -1,
    # sections 1, idx -1 + 1 + 0 = 0
    assert lrfind.valley(LRS[:6], np.array([5.0, 4.0, 3.0, 6.0, 5.0, 4.0]))[1] == 0


def test_suggestions_read_the_curve_trimmed_as_fastai_does():
    lrs = lrfind.lr_schedule(1e-4, 1.0, 20)
    losses = 20.0 - np.arange(20)  # falling all along: the lowest point would be the last
    got = lrfind.suggest(lrs, losses, 20, ("minimum",))
    assert got["minimum"] == (pytest.approx(lrs[14] / 10), 14)  # [20 // 10 : -5] = points 2 .. 14
    losses[12] = np.nan  # cut at the first NaN
    assert lrfind.suggest(lrs, losses, 20, ("minimum",))["minimum"][1] == 11
    short = lrfind.suggest(lrs[:7], losses[:7], 20, ("valley",))  # 7 - 5 - 2 = 0 points left
    assert math.isnan(short["valley"][0])


def test_the_valley_suggestion_of_gradient_descent_on_linear_regression_is_stable():
    """MSE on a linear model is a quadratic with Hessian H = 2/n [X 1]^T [X 1]; full-batch
    gradient descent converges exactly for lr < 2/L, L = its largest eigenvalue."""
    ds = data.load("regression", n_samples=500, n_features=4, outlier_fraction=0.0, normalize="none", seed=0)
    x1 = np.hstack([ds.x_train.astype(np.float64), np.ones((len(ds.x_train), 1))])
    big = np.linalg.eigvalsh(2 * x1.T @ x1 / len(x1)).max()

    def valley(optimizer, train, start, end, steps):
        r = lrfind.lr_find(ds, model="linear", loss="mse", optimizer=optimizer, train=train, start=start, end=end,
                           steps=steps)
        return r, r.suggestions["valley"][0]

    # fastai's default range; gd, and sgd on the full batch
    for opt, train in (("gd", {}), ("sgd", {"batch_size": "full"})):
        _, lr = valley(opt, train, 1e-7, 10.0, 100)
        assert 0 < lr < 2 / big
    # A range of three decades around 1/L. Without noise the loss falls at every step below
    # 2/L, so the longest valley runs from the trimmed curve's start (lrs[10] = 0.02/L) to the
    # smoothed loss's minimum, a few times 2/L (the average lags ~1/(1 - 0.98) = 50 steps
    # behind the loss), and fastai's rule takes the point half-way in steps: the geometric
    # mean, sqrt(0.02 * 7)/L = 0.37/L. Hence within a factor 4 below 1/L.
    r, lr = valley("gd", {}, 1e-2 / big, 10 / big, 100)
    assert 0.25 / big < lr < 1 / big
    assert lr == pytest.approx(math.sqrt(r.lrs[10] * r.min_lr), rel=0.5)
    assert 2 / big < r.min_lr < 10 / big


@pytest.mark.parametrize("name", [n for n in optimizers.OPTIMIZERS.names() if not optimizers.needs_closure(n)])
def test_every_optimizer_run_accepts_can_be_range_tested(moons, name):
    r = lrfind.lr_find(moons, model={"name": "mlp", "hidden": [8]}, loss="cross_entropy", optimizer=name,
                       train={"batch_size": 32}, start=1e-5, end=10.0, steps=30)
    assert len(r.lrs) >= 10 and math.isfinite(r.losses[0]) and r.suggestions["valley"][0] > 0


def test_muon_with_param_groups_is_range_tested_and_its_parts_scale_in_the_grid(moons):
    opt = {"name": "muon", "lr": 0.02, "fallback": {"name": "adamw", "lr": 1e-3},
           "param_groups": [{"params": "output", "name": "adamw"}]}
    r = lrfind.lr_find(moons, model={"name": "mlp", "hidden": [8]}, loss="cross_entropy", optimizer=opt,
                       train={"batch_size": 32}, start=1e-4, end=10.0, steps=30)
    assert len(r.lrs) >= 10
    # in the test every part followed the section's rate in proportion; the grid writes that out
    scaled = _scaled(opt, 0.002)
    assert scaled["lr"] == 0.002 and scaled["fallback"]["lr"] == pytest.approx(1e-4)
    assert scaled["param_groups"][0]["lr"] == pytest.approx(1e-4)  # adamw's default 1e-3, times 0.1
    assert opt["fallback"]["lr"] == 1e-3  # the config's section is left as it was


def test_lbfgs_is_refused(moons):
    with pytest.raises(ConfigError, match="optimizer.name: cannot be range-tested"):
        lrfind.lr_find(moons, model="linear", loss="cross_entropy", optimizer="lbfgs", steps=10)


# ---------- the command ----------

RAW = {"name": "tiny", "dataset": {"name": "moons", "n_samples": 300, "noise": 0.2},
       "model": {"name": "mlp", "hidden": [16]}, "loss": "cross_entropy", "optimizer": {"name": "adam", "lr": 0.01},
       "train": {"epochs": 5, "batch_size": 16}, "seeds": [3, 4],
       "grid": [{"optimizer.name": ["sgd"], "optimizer.lr": [0.1, 0.01]},
                {"optimizer": [{"name": "sgd", "lr": 0.05, "momentum": 0.9}, {"name": "adam"}]}]}
CONFIG = yaml.safe_dump(RAW, sort_keys=False)


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(CONFIG)
    return path


def test_the_command_prints_a_table_draws_the_curves_and_writes_a_grid_the_config_accepts(config, tmp_path):
    png = tmp_path / "curves.png"
    r = runner.invoke(app, ["lr-find", str(config), "--steps", "60", "--out", str(png), "--write-grid",
                            "--suggest", "valley,minimum"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "tiny: learning-rate range test, lr 1e-07 to 10 in 60 steps" in r.output
    rows = {line.split("│")[1].strip(): line for line in r.output.splitlines() if line.startswith("│")}
    assert list(rows) == ["sgd", "sgd, momentum=0.9", "adam"]  # distinct optimizers, lr aside, in run order
    assert png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {png}" in r.output

    # the same suggestions from the API (first seed, 3), in the table and around them in the grid
    report = api.lr_find(str(config), steps=60, suggest=("valley", "minimum"))
    valley = [t.result.suggestions["valley"][0] for t in report.tested]
    for (label, line), lr in zip(rows.items(), valley):
        assert f" {lr:.2g} " in line, (label, line)
    snippet = yaml.safe_load(r.output.split(f"wrote {png}\n", 1)[1])
    exp = load_experiment({**RAW, "grid": snippet["grid"]})  # validates every run
    assert len(exp.runs) == 3 * 3 * 2  # optimizers x rates x seeds
    for entry, opt, lr in zip(snippet["grid"], ({"name": "sgd"}, {"name": "sgd", "momentum": 0.9},
                                                {"name": "adam"}), valley):
        assert [{k: v for k, v in o.items() if k != "lr"} for o in entry["optimizer"]] == [opt] * 3
        assert [o["lr"] for o in entry["optimizer"]] == [float(f"{lr * f:.2g}") for f in (1 / 3, 1, 3)]


def test_the_grid_keeps_the_configs_other_swept_keys(tmp_path):
    path = tmp_path / "q.yaml"
    path.write_text(yaml.safe_dump({**RAW, "grid": {"loss": ["cross_entropy", "mse"], "optimizer": ["sgd", "adam"]}}))
    text = api.lr_find(str(path), steps=30).grid()
    grid = yaml.safe_load(text)["grid"]
    assert [e["loss"] for e in grid] == [["cross_entropy", "mse"]] * 2
    assert len(load_experiment({**yaml.safe_load(path.read_text()), "grid": grid}).runs) == 2 * 3 * 2 * 2


def test_the_default_figure_goes_to_the_current_directory(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["lr-find", str(config), "--steps", "20", "--set", "optimizer.name=lion"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "lr_find-tiny.png").stat().st_size > 0
    # an optimizer named with --set is the one tested (the grid's are not)
    assert [ln.split("│")[1].strip() for ln in r.output.splitlines() if ln.startswith("│")] == ["lion"]


@pytest.mark.parametrize("args, message", [
    (["--start", "1", "--end", "0.1"], "error: --end: must be a finite learning rate > --start (1), got 0.1"),
    (["--start", "0"], "error: --start: must be a learning rate > 0, got 0.0"),
    (["--steps", "1"], "error: --steps: must be a whole number >= 2, got 1"),
    (["--suggest", "valey"], "error: --suggest: must be one of ['valley', 'steep', 'minimum'], got 'valey' "
                             "(did you mean 'valley'?)"),
    (["--set", "optimizer.lr=-1", "--set", "grid=null"], "optimizer.lr: must be a number > 0, got -1"),
    (["--set", "optimizer.name=lbfgs"], "nothing to range-test: lbfgs steps through a closure"),
    (["--set", "optimizer.momentum=0.9"], "optimizer.momentum: unknown option"),
])
def test_bad_options_are_one_line_and_exit_2(config, args, message):
    r = runner.invoke(app, ["lr-find", str(config), *args])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1 and r.output.startswith("error: ") and message in r.output


def test_a_curve_too_short_to_read_is_said_so(config, tmp_path):
    r = runner.invoke(app, ["lr-find", str(config), "--steps", "6", "--out", str(tmp_path / "x.png"), "--write-grid",
                            "--set", "optimizer.name=sgd"])
    assert r.exit_code == 0, r.output
    assert "note: sgd has no suggestion: too short a curve" in r.output and "# sgd: no suggestion" in r.output


def test_lbfgs_among_others_is_skipped_with_a_note(config, tmp_path):
    r = runner.invoke(app, ["lr-find", str(config), "--steps", "20", "--out", str(tmp_path / "x.png"),
                            "--set", "grid={optimizer.name: [lbfgs, sgd]}"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "note: lbfgs skipped: lbfgs steps through a closure" in r.output and "│ sgd " in r.output
