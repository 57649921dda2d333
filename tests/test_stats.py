"""Issue 15: statistics over seeds. analysis/stats.py against scipy.stats (a test-only
dependency), and compare --vs / plot --kind stats|improvement on a small real sweep."""

import io
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import lossbench
from lossbench import api
from lossbench.analysis import compare as cmp
from lossbench.analysis import stats
from lossbench.cli import app

ss = pytest.importorskip("scipy.stats")
runner = CliRunner()


def samples(seed=0, count=300):
    """Random samples of many sizes: continuous, with ties, with zeros."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        n = int(rng.integers(1, 70))
        kind = i % 3
        yield (rng.normal(size=n) if kind == 0 else rng.integers(-4, 5, size=n).astype(float) if kind == 1
               else np.round(rng.normal(size=n), 1))


def test_iqm_is_scipy_trim_mean_quarter():
    for x in samples(1):
        assert stats.iqm(x) == pytest.approx(ss.trim_mean(x, 0.25), rel=1e-12)
    assert stats.iqm([3.0]) == 3.0
    # 8 runs: the middle four, after dropping two at each end
    assert stats.iqm([9, 1, 2, 3, 4, 5, 6, 100]) == pytest.approx((3 + 4 + 5 + 6) / 4)


def test_median_matches_numpy_and_a_diverged_run_sorts_lowest():
    for x in samples(2, 100):
        assert stats.median(x) == pytest.approx(np.median(x))
    assert stats.median([0.9, -math.inf, 0.8]) == 0.8
    assert stats.median([0.9, -math.inf]) == -math.inf  # the middle touches a diverged run: worst
    assert stats.iqm([0.9, 0.8, -math.inf]) == -math.inf  # 3 runs trim none: the diverged one is in the middle
    assert stats.iqm([0.9, 0.8, 0.85, 0.7, -math.inf]) == pytest.approx((0.8 + 0.85 + 0.7) / 3)  # trimmed away


def test_wilcoxon_p_is_scipy_wilcoxon_defaults_on_many_cases():
    warnings.simplefilter("ignore")  # scipy warns on small samples and on zeros
    checked = 0
    for d in samples(3, 600):
        if (d == 0).all():
            continue
        assert stats.wilcoxon_p(d)[0] == pytest.approx(ss.wilcoxon(d).pvalue, rel=1e-9, abs=1e-12), d
        checked += 1
    assert checked > 500
    # the branches named: exact (no ties, n <= 50), permutation (ties, n <= 13), normal (ties, n > 13)
    for d in ([1.5, -0.2, 3.1, 2.2, 0.7], [1, 1, 2, -1, 0, 3], [1, 2, 2, 3, -1, 4, 5, 5, 6, 7, -2, 8, 9, 3, 4]):
        assert stats.wilcoxon_p(d)[0] == pytest.approx(ss.wilcoxon(d).pvalue, rel=1e-9)


def test_prob_improvement_is_mann_whitney_u_over_nm_with_ties_half():
    rng = np.random.default_rng(4)
    for _ in range(200):
        x = rng.integers(0, 4, size=rng.integers(1, 10)).astype(float)
        y = rng.integers(0, 4, size=rng.integers(1, 10)).astype(float)
        u = ss.mannwhitneyu(x, y).statistic
        assert stats.prob_improvement(x, y) == pytest.approx(u / (len(x) * len(y)))
    assert stats.prob_improvement([-math.inf], [-math.inf]) == 0.5  # two diverged runs tie
    assert stats.prob_improvement([0.1], [-math.inf]) == 1.0


def holm_by_hand(p):
    m, order = len(p), sorted(range(len(p)), key=lambda i: p[i])
    out, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def test_holm_matches_the_step_down_formula():
    rng = np.random.default_rng(5)
    for _ in range(50):
        p = list(rng.uniform(0, 0.2, size=rng.integers(1, 9)))
        assert list(stats.holm(p)) == pytest.approx(holm_by_hand(p))
    assert list(stats.holm([0.01, 0.04, 0.03])) == pytest.approx([0.03, 0.06, 0.06])
    assert np.isnan(stats.holm([0.01, math.nan])[1]) and stats.holm([0.01, math.nan])[0] == 0.01  # m = 1


def test_bootstrap_repeats_contains_the_iqm_and_shrinks_with_more_runs():
    rng = np.random.default_rng(6)
    few, many = rng.normal(size=8), rng.normal(size=80)
    assert stats.bootstrap_ci(few, seed=3) == stats.bootstrap_ci(few, seed=3)
    assert stats.bootstrap_ci(few, seed=3) != stats.bootstrap_ci(few, seed=4)
    lo, hi = stats.bootstrap_ci(few)
    assert lo <= stats.iqm(few) <= hi
    lo2, hi2 = stats.bootstrap_ci(many)
    assert hi2 - lo2 < (hi - lo) / 2
    # by hand: the same index matrix, percentiles of the resampled trimmed means
    idx = np.random.default_rng(0).integers(0, 8, size=(2000, 8))
    expect = np.percentile([ss.trim_mean(few[i], 0.25) for i in idx], [2.5, 97.5])
    assert (lo, hi) == pytest.approx(tuple(expect))
    assert all(math.isnan(v) for v in stats.bootstrap_ci([0.5]))  # one seed: no interval


def test_paired_figures_match_an_independent_computation():
    rng = np.random.default_rng(7)
    x, y = rng.normal(0.3, 1, size=9), rng.normal(size=9)
    y[2] = x[2]  # a tie
    r = stats.paired(x, y)
    d = x - y
    assert r["pairs"] == 9
    assert r["win_rate"] == pytest.approx(((d > 0).sum() + 0.5 * (d == 0).sum()) / 9)
    assert r["diff_mean"] == pytest.approx(d.mean())
    assert r["p_value"] == pytest.approx(ss.wilcoxon(x, y).pvalue)
    assert r["p_improve"] == pytest.approx(ss.mannwhitneyu(x, y).statistic / 81)
    assert r["diff_ci_low"] <= r["diff_mean"] <= r["diff_ci_high"]
    one = stats.paired([1.0], [0.0])
    assert one["win_rate"] == 1.0 and one["p_value"] == 1.0 and math.isnan(one["diff_ci_low"])


# -- on results directories ------------------------------------------------------------------

MOONS = """
name: moons-stats
dataset: {name: moons, n_samples: 200, noise: 0.25}
model: {name: mlp, hidden: [8], activation: tanh}
loss: cross_entropy
optimizer: {name: sgd, lr: 0.05}
train: {epochs: 4, batch_size: 32}
seeds: [0, 1, 2, 3, 4]
grid:
  loss: [cross_entropy, mse]
  optimizer.name: [sgd, adam, rmsprop]
"""


@pytest.fixture(scope="module")
def moons(tmp_path_factory):
    d = tmp_path_factory.mktemp("stats")
    (d / "moons.yaml").write_text(MOONS)
    lossbench.run(d / "moons.yaml", out=d / "moons", workers=1)
    return d / "moons"


def test_group_median_and_iqm_on_a_real_sweep(moons):
    c = api.compare([moons], ["loss.name", "optimizer.name"], "val_accuracy")
    p = api.load_problem(moons)
    runs = cmp.per_run(p, "val_accuracy", None).merge(p.runs[["run_id", "loss.name", "optimizer.name"]])
    for _, row in c.table.iterrows():
        best = runs[(runs["loss.name"] == row["loss.name"]) & (runs["optimizer.name"] == row["optimizer.name"])]["best"]
        assert row["n"] == 5
        assert row["median"] == pytest.approx(np.median(best))
        assert row["iqm"] == pytest.approx(ss.trim_mean(best, 0.25))
        assert row["iqm_ci_low"] <= row["iqm"] + 1e-12 and row["iqm"] <= row["iqm_ci_high"] + 1e-12
    assert c.notes == []  # five seeds: not weak


def test_vs_pairs_each_group_with_its_baseline_by_seed(moons):
    c = api.compare([moons], ["loss.name", "optimizer.name"], "val_accuracy", vs={"optimizer.name": "sgd"})
    v = c.versus.set_index("group")
    assert sorted(v.index) == ["cross_entropy, adam", "cross_entropy, rmsprop", "mse, adam", "mse, rmsprop"]
    assert v.loc["mse, adam", "baseline"] == "mse, sgd"  # same loss, optimizer sgd
    p = api.load_problem(moons)
    runs = cmp.per_run(p, "val_accuracy", None).merge(p.runs[["run_id", "loss.name", "optimizer.name", "seed"]])

    def best(loss, opt):
        return runs[(runs["loss.name"] == loss) & (runs["optimizer.name"] == opt)].sort_values("seed")["best"]

    ps = []
    for group in v.index:
        loss, opt = group.split(", ")
        x, y = best(loss, opt).to_numpy(), best(loss, "sgd").to_numpy()
        d = x - y
        assert v.loc[group, "pairs"] == 5
        assert v.loc[group, "diff_mean"] == pytest.approx(d.mean())
        assert v.loc[group, "win_rate"] == pytest.approx(((d > 0).sum() + 0.5 * (d == 0).sum()) / 5)
        p_ref = ss.wilcoxon(x, y).pvalue if (d != 0).any() else 1.0
        assert v.loc[group, "p_value"] == pytest.approx(p_ref)
        ps.append(v.loc[group, "p_value"])
    assert list(v["p_holm"]) == pytest.approx(holm_by_hand(ps))
    # five pairs: the smallest two-sided exact p is 2/32 = 0.0625 > 0.05, so no verdict can say better
    assert set(v["verdict"]) == {"no evidence"}


def test_vs_on_the_cli_and_its_errors(moons):
    r = runner.invoke(app, ["compare", str(moons), "--by", "loss.name,optimizer.name", "--vs", "optimizer.name=sgd",
                            "--format", "csv"])
    assert r.exit_code == 0, r.output
    t = pd.read_csv(io.StringIO(r.stdout))
    assert {"win_rate", "diff_mean", "p_improve", "pi_ci_low", "p_value", "p_holm", "verdict"} <= set(t.columns)
    for args, says in [(["--vs", "optimizer.lr=0.1"], "--vs: 'optimizer.lr' is not a key"),
                       (["--vs", "optimizer.name=lion"], "optimizer.name takes: adam, rmsprop, sgd"),
                       (["--vs", "optimizer.name"], "is not KEY=VALUE"),
                       (["--vs", "optimizer.name=sgd", "--alpha", "1.5"], "--alpha: 1.5"),
                       (["--vs", "optimizer.name=sgd", "--lr"], "choose one")]:
        r = runner.invoke(app, ["compare", str(moons), "--by", "loss.name,optimizer.name", *args])
        assert r.exit_code == 2 and says in r.output and "Traceback" not in r.output, (args, r.output)


def test_terminal_tables_at_80_and_120_columns(moons, monkeypatch):
    from rich.console import Console

    import lossbench.cli as cli

    for width in (80, 120):
        monkeypatch.setattr(cli, "_console", lambda w=width: Console(width=w, force_terminal=True, color_system=None))
        r = runner.invoke(app, ["compare", str(moons), "--by", "loss.name,optimizer.name"])
        assert r.exit_code == 0 and "IQM" in r.output
        assert all(len(line) <= width for line in r.output.splitlines() if "│" in line)
        r = runner.invoke(app, ["compare", str(moons), "--by", "loss.name,optimizer.name",
                                "--vs", "optimizer.name=sgd"])
        assert r.exit_code == 0 and "no evidence" in r.output and "…" not in r.output
        assert all(len(line) <= width for line in r.output.splitlines() if "│" in line)


def diverging_dir(tmp_path, metric_rows):
    from test_compare import make_dir

    return make_dir(tmp_path / "d", "div", metric_rows)


def test_diverged_runs_are_the_worst_and_failed_runs_missing(tmp_path):
    runs = [{"name": "adam", "lr": 0.1, "seed": s, "status": "ok", "acc": [0.5, a]} for s, a in enumerate([.8, .9, .7])]
    runs += [{"name": "sgd", "lr": 0.1, "seed": 0, "status": "ok", "acc": [0.6, 0.7]},
             {"name": "sgd", "lr": 0.1, "seed": 1, "status": "ok", "acc": [0.6, 0.72]},
             {"name": "sgd", "lr": 0.1, "seed": 2, "status": "diverged", "acc": [0.99, math.nan]},  # lucky, then NaN
             {"name": "sgd", "lr": 0.1, "seed": 3, "status": "failed", "acc": [0.95]}]  # an epoch, then an error
    d = diverging_dir(tmp_path, runs)
    t = api.compare([d], ["optimizer.name"], "val_accuracy").table.set_index("group")
    assert t.loc["sgd", "n"] == 3  # the failed run is missing; the diverged one counts
    assert t.loc["sgd", "median"] == 0.7  # not 0.72 (the 0.99 never counts): the diverged run is the lowest
    assert t.loc["sgd", "iqm"] == -math.inf  # three runs trim none: shown as "diverged"
    assert t.loc["adam", "iqm"] == pytest.approx(0.8)
    loss = api.compare([d], ["optimizer.name"], "val_loss").table.set_index("group")
    assert loss.loc["sgd", "iqm"] == math.inf  # lower is better: the worst is +inf
    v = api.compare([d], ["optimizer.name"], "val_accuracy", vs=["optimizer.name=sgd"]).versus.iloc[0]
    assert v["pairs"] == 3 and v["win_rate"] == 1.0  # seed by seed adam wins, also against the diverged seed
    assert v["p_improve"] == pytest.approx((9 - 1 - 0.5) / 9)  # all 9 pairs: adam's 0.7 loses to 0.72, ties 0.7
    r = runner.invoke(app, ["compare", str(d), "--by", "optimizer.name"])
    assert "diverged" in r.output and "fewer than 5 runs" in r.output


def test_groups_without_common_seeds_get_a_note_and_no_verdict(tmp_path):
    runs = [{"name": "adam", "lr": 0.1, "seed": s, "status": "ok", "acc": [0.8 + s / 100]} for s in (0, 1)]
    runs += [{"name": "sgd", "lr": 0.1, "seed": s, "status": "ok", "acc": [0.7]} for s in (5, 6)]
    d = diverging_dir(tmp_path, runs)
    v = api.compare([d], ["optimizer.name"], vs={"optimizer.name": "sgd"}).versus.iloc[0]
    assert v["pairs"] == 0 and v["note"] == "no common seeds" and v["verdict"] == "—"


def test_plot_stats_and_improvement(moons, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    figs, real = [], Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: (figs.append(self), real(self, *a, **k))[1])
    c = api.compare([moons], ["loss.name", "optimizer.name"], "val_accuracy")
    for kind in ("stats", "improvement"):
        r = runner.invoke(app, ["plot", str(moons), "--by", "loss.name,optimizer.name", "--metric", "val_accuracy",
                                "--kind", kind, "--out", str(tmp_path / f"{kind}.png")])
        assert r.exit_code == 0, r.output
        assert (tmp_path / f"{kind}.png").stat().st_size > 10_000
    ax = figs[0].axes[0]
    at = {t.get_text(): y for t, y in zip(ax.get_yticklabels(), ax.get_yticks())}
    assert sorted(at, key=at.get, reverse=True) == list(c.table["group"])  # rank order, best at the top
    iqm_points = sorted(line.get_xdata()[0] for line in ax.lines if line.get_marker() == "o" and len(line.get_xdata()))
    assert iqm_points == pytest.approx(sorted(c.table["iqm"]))
    matrix = figs[1].axes[0].images[0].get_array()
    assert np.allclose(matrix + matrix.T, 1.0)  # P(a > b) + P(b > a) = 1 with ties half
