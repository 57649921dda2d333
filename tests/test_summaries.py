"""Issue 10, item 7: summaries that say what they show (real sweeps, real files)."""

import io

import pandas as pd
import pytest
from typer.testing import CliRunner

import lossbench
from lossbench.cli import app

runner = CliRunner()

LOSSES = """
name: two-losses
dataset: {name: blobs, n_samples: 300, n_classes: 3, cluster_std: 6.0}  # overlapping: never 100%
model: {name: mlp, hidden: [8]}
loss: cross_entropy
optimizer: {name: adam, lr: 0.01}
train: {epochs: 3, batch_size: 32}
seeds: [0, 1]
grid:
  loss: [cross_entropy, squared_hinge]
  optimizer.lr: [0.01, 0.05]
target: {metric: val_accuracy, value: 0.5}
"""


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    d = tmp_path_factory.mktemp("losses")
    (d / "c.yaml").write_text(LOSSES)
    lossbench.run(d / "c.yaml", out=d / "a", workers=1)
    lossbench.run(d / "c.yaml", out=d / "b", workers=1, overrides=["dataset.seed=1"])
    return d


def test_show_on_an_unfinished_sweep_says_so(tmp_path):
    (tmp_path / "c.yaml").write_text(LOSSES)
    done = []

    def stop_after_three(kind, **info):
        if kind == "run_end":
            done.append(info)
            if len(done) == 3:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        lossbench.run(tmp_path / "c.yaml", out=tmp_path / "o", workers=1, on_event=stop_after_three)
    r = runner.invoke(app, ["show", str(tmp_path / "o")])
    assert r.exit_code == 0
    assert "unfinished: 3 of 8 runs recorded; the figures above are from those only" in r.output
    assert "3 runs: 3 ok" in r.output


def test_show_on_a_finished_sweep_does_not_say_unfinished(swept):
    r = runner.invoke(app, ["show", str(swept / "a")])
    assert r.exit_code == 0 and "unfinished" not in r.output


def test_ranking_by_a_loss_across_different_losses_is_refused_and_said(swept):
    r = runner.invoke(app, ["compare", str(swept / "a"), "--metric", "val_loss"])
    assert r.exit_code == 0
    assert ("warning: val_loss is in each loss's own units and these runs use different losses (cross_entropy, "
            "squared_hinge): not comparable, so no group is ranked") in r.output
    assert "NOT RANKED: the groups use different losses" in r.output
    rows = [line for line in r.output.splitlines() if line.startswith("│")]
    assert len(rows) == 4 and all(line.startswith("│ – │") for line in rows)
    csv = runner.invoke(app, ["compare", str(swept / "a"), "--metric", "val_loss", "--format", "csv"]).stdout
    table = pd.read_csv(io.StringIO(csv[csv.index("rank,"):]))
    assert table["rank"].isna().all()


def test_pooling_loss_curves_over_losses_warns_and_one_loss_does_not(swept):
    r = runner.invoke(app, ["compare", str(swept / "a"), "--by", "optimizer.lr"])
    assert r.exit_code == 0
    assert ("warning: loss AUC and the val loss curves are in each loss's own units (cross_entropy, squared_hinge); "
            "here each group averages runs of different losses") in r.output
    r = runner.invoke(app, ["compare", str(swept / "a"), "--by", "loss.name"])
    assert "compare them only between groups with the same loss" in r.output
    r = runner.invoke(app, ["compare", str(swept / "a"), "--by", "loss.name", "--metric", "val_accuracy"])
    assert "no group is ranked" not in r.output and "│ 1 │" in r.output


def test_a_profile_where_no_group_reached_the_target_says_so(swept):
    r = runner.invoke(app, ["compare", str(swept / "a"), str(swept / "b"), "--profile", "--target", "1.0"])
    assert r.exit_code == 0
    assert r.stdout == ("no group reached val_accuracy ≥ 1 on at least half its seeds, on any problem: "
                        "there is no profile to draw. Try an easier --target\n")
    assert "0.00" not in r.output


def test_the_shipped_hinge_vs_cross_entropy_config_shows_the_losses_differ(tmp_path):
    from pathlib import Path

    config = Path(__file__).parent.parent / "configs" / "hinge_vs_cross_entropy.yaml"
    r = runner.invoke(app, ["run", str(config), "--out", str(tmp_path / "o"), "-q"])
    assert r.exit_code == 0, r.output
    runs = lossbench.load(tmp_path / "o").runs
    assert runs["best_val_accuracy"].max() < 0.99  # not every cell at 100%: there is something to see
    test = runs.groupby(["optimizer.name", "loss.name"])["test_accuracy"].mean()
    assert test["momentum", "cross_entropy"] - test["momentum", "hinge"] > 0.03  # several points apart
    assert test["momentum", "cross_entropy"] - test["momentum", "squared_hinge"] > 0.03
    assert abs(test["adam", "cross_entropy"] - test["adam", "hinge"]) < test["momentum", "cross_entropy"] - \
        test["momentum", "hinge"]  # Adam closes most of the gap


def test_figures_too_small_for_their_decimals_print_in_e_notation():
    from lossbench.analysis.report import _pm

    assert _pm(3.2e-7, 1.5e-8) == "3.20e-07 ± 1.50e-08"  # a test function's loss near its minimum, not 0.0000
    assert _pm(0.01234, 0.0) == "0.0123 ± 0.0000" and _pm(0.98, None) == "0.9800"
