"""Issue 10, item 7: figures that say what they show. Real sweeps, the real command; the
figure is caught as it is saved, and what it draws is checked."""

import pytest
from typer.testing import CliRunner

import lossbench
from lossbench.cli import app

pytest.importorskip("matplotlib")
from matplotlib.figure import Figure  # noqa: E402

runner = CliRunner()

LR = """
name: lr
dataset: {name: spirals, n_samples: 300, n_classes: 3, noise: 0.2}
model: {name: mlp, hidden: [16], activation: tanh}
loss: cross_entropy
optimizer: {name: adam, lr: 0.01}
train: {epochs: 8, batch_size: 32}
seeds: [0, 1]
grid:
  optimizer.name: [sgd, adam]
  optimizer.lr: [0.001, 0.01, 0.1, 0.3]
target: {metric: val_accuracy, value: 0.5}
"""
NO_LR = LR.replace("optimizer.lr: [0.001, 0.01, 0.1, 0.3]", "loss: [cross_entropy, mse]")


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    d = tmp_path_factory.mktemp("plots")
    (d / "lr.yaml").write_text(LR)
    (d / "nolr.yaml").write_text(NO_LR)
    lossbench.run(d / "lr.yaml", out=d / "lr", workers=1)
    lossbench.run(d / "nolr.yaml", out=d / "nolr", workers=1)
    return d


@pytest.fixture
def drawn(monkeypatch):
    """The figures `lossbench plot` saves, as they were saved."""
    figs, real = [], Figure.savefig

    def keep(self, *a, **k):
        figs.append(self)
        return real(self, *a, **k)

    monkeypatch.setattr(Figure, "savefig", keep)
    return figs


def plot(*args):
    r = runner.invoke(app, ["plot", *map(str, args)])
    assert r.exit_code == 0, r.output
    return r


def test_log_puts_losses_on_a_log_axis_and_accuracy_not(dirs, drawn, tmp_path):
    plot(dirs / "lr", "--log", "--out", tmp_path / "a.png")
    curves, train_val, _, _ = drawn[0].axes
    assert curves.get_yscale() == "linear" and train_val.get_yscale() == "log"
    assert (tmp_path / "a.png").stat().st_size > 10_000


def test_the_lr_range_is_drawn_and_tolerance_moves_it(dirs, drawn, tmp_path):
    def bands(tolerance):
        drawn.clear()
        plot(dirs / "lr", "--kind", "lr", "--tolerance", tolerance, "--out", tmp_path / "lr.png")
        ax = drawn[0].axes[0]
        spans = sorted((round(p.get_x(), 6), round(p.get_x() + p.get_width(), 6)) for p in ax.patches
                       if p.get_alpha() == 0.12 and p.get_width() > 0)  # the axvspans, in data units
        return spans, ax.get_title()

    narrow, title0 = bands(0.0)
    wide, title1 = bands(0.99)
    assert "within 0% of the group's best" in title0 and "within 99% of the group's best" in title1
    assert narrow == [] and wide == [(0.001, 0.3), (0.001, 0.3)]  # 99%: every lr; 0%: only the best, no width


def test_bars_show_small_differences_on_a_labelled_zoomed_axis_with_the_target(dirs, drawn, tmp_path):
    plot(dirs / "lr", "--kind", "bars", "--out", tmp_path / "b.png")
    ax = drawn[0].axes[0]
    comparison = lossbench.api.compare([dirs / "lr"])
    means = comparison.table["best_mean"]
    low, high = ax.get_ylim()
    assert low > 0 and low < means.min() - comparison.table["best_std"].max() + 1e-9 and high > means.max()
    assert "not from 0" in ax.get_ylabel()
    assert sorted(t.get_text() for t in ax.texts) == sorted(f"{m:.4g}" for m in means)
    assert [line.get_ydata()[0] for line in ax.get_lines() if line.get_label() == "target 0.5"] == [0.5]


def test_target_lines_are_drawn_on_the_curves(dirs, drawn, tmp_path):
    plot(dirs / "lr", "--kind", "curves", "--out", tmp_path / "c.png")
    ax = drawn[0].axes[0]
    assert [tuple(line.get_ydata()) for line in ax.get_lines() if line.get_label() == "target 0.5"] == [(0.5, 0.5)]


def test_the_fourth_panel_shows_each_seed_when_lr_is_not_swept(dirs, drawn, tmp_path):
    plot(dirs / "nolr", "--out", tmp_path / "all.png")
    ax = drawn[0].axes[3]
    assert ax.axison and "of each seed" in ax.get_title()
    points = sorted(y for line in ax.get_lines() for y in line.get_ydata())
    runs = lossbench.load(dirs / "nolr").runs
    assert points == sorted(runs["best_val_accuracy"])  # every seed of every cell, as recorded


def test_a_profile_no_group_reached_is_one_line(dirs, tmp_path):
    r = runner.invoke(app, ["plot", str(dirs / "lr"), str(dirs / "nolr"), "--kind", "profile", "--target", "1.0",
                            "--out", str(tmp_path / "p.png")])
    assert r.exit_code == 2 and "no group reached val_accuracy ≥ the target" in r.output and r.output.count("\n") == 1
    assert not (tmp_path / "p.png").exists()
