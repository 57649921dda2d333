"""`compare` and `plot` on results directories whose numbers the test wrote itself, so every
figure is checked against a computation made here, independently of lossbench."""

import io
import json
import math
import statistics
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from lossbench import api
from lossbench.analysis import compare as cmp
from lossbench.cli import app

runner = CliRunner()
T975_2DF = 4.303  # Student's t, 97.5% quantile, 2 degrees of freedom (three seeds)


def make_dir(path, name, runs, swept=("optimizer.name", "optimizer.lr"), target=None):
    """A results directory as `lossbench run` writes it, from per-run accuracy/loss curves."""
    path.mkdir(parents=True)
    rows, hist = [], []
    for i, r in enumerate(runs):
        rid = f"{name[:4]}{i:08d}"
        acc, loss, dt = (r.get("acc", []),
                         r.get("loss") or [1.0 / (e + 1) for e in range(len(r.get("acc", [])))],
                         r.get("dt", 0.5))
        rows.append({"run_id": rid, **{k: r[k.split(".")[1]] for k in swept}, "seed": r["seed"], "status": r["status"],
                     "epochs": len(acc), "test_accuracy": r.get("test", math.nan), "wall_time_s": dt * len(acc),
                     "n_params": 10, "error": "boom" if r["status"] == "failed" else ""})
        for e, (a, lo) in enumerate(zip(acc, loss), start=1):
            hist.append({"run_id": rid, "epoch": e, "step": 10 * e, "train_loss": lo * 0.9, "val_loss": lo,
                         "val_accuracy": a, "lr": 0.1, "grad_norm": 1.0, "elapsed_s": dt * e})
    run_cols = ["run_id", *swept, "seed", "status", "epochs", "test_accuracy", "wall_time_s", "n_params", "error"]
    # headers even with no run, as `run` writes
    pd.DataFrame(rows, columns=run_cols).to_csv(path / "runs.csv", index=False)
    pd.DataFrame(hist, columns=["run_id", "epoch", "step", "train_loss", "val_loss", "val_accuracy", "lr", "grad_norm",
                                "elapsed_s"]).to_csv(path / "history.csv", index=False)
    (path / "manifest.json").write_text(json.dumps({"config": f"configs/{name}.yaml", "swept": list(swept),
                                                     "target": target}))
    return path


A = [[0.5, 0.8, 0.9, 0.95], [0.6, 0.85, 0.92, 0.91], [0.4, 0.7, 0.75, 0.88]]
LOSS_A0 = [1.0, 0.6, 0.4, 0.3]


@pytest.fixture
def problem(tmp_path):
    runs = [{"name": "adam", "lr": 0.1, "seed": s, "status": "ok", "acc": a, "test": 0.9 + s / 100}
            for s, a in enumerate(A)]
    runs[0]["loss"] = LOSS_A0
    runs += [{"name": "sgd", "lr": 0.1, "seed": 0, "status": "ok", "acc": [0.3, 0.5, 0.6, 0.7]},
             {"name": "sgd", "lr": 0.1, "seed": 1, "status": "ok", "acc": [0.35, 0.55, 0.65, 0.72]},
             # diverged after a lucky first epoch: must count, but never contribute its 0.99
             {"name": "sgd", "lr": 0.1, "seed": 2, "status": "diverged", "acc": [0.99, math.nan]},
             {"name": "rmsprop", "lr": 0.1, "seed": 0, "status": "failed"},
             {"name": "sgd", "lr": 0.01, "seed": 0, "status": "ok", "acc": [0.91, 0.93, 0.94, 0.96]}]
    return make_dir(tmp_path / "p", "toy", runs, target={"metric": "val_accuracy", "value": 0.9})


def row(table, group):
    return table.set_index("group").loc[group]


def test_aggregation_matches_an_independent_computation(problem):
    t = api.compare([problem]).table
    a = row(t, "adam, lr=0.1")
    finals, bests = [x[-1] for x in A], [max(x) for x in A]
    assert a["final_mean"] == pytest.approx(statistics.mean(finals))
    assert a["final_std"] == pytest.approx(statistics.stdev(finals))
    half = T975_2DF * statistics.stdev(bests) / math.sqrt(3)
    assert (a["best_ci_low"], a["best_ci_high"]) == pytest.approx(
        (statistics.mean(bests) - half, statistics.mean(bests) + half), abs=1e-4)
    # target 0.9: seeds 0 and 1 reach it at epoch 3 (step 30, 1.5 s), seed 2 never
    assert (a["epochs_to_target"], a["steps_to_target"], a["time_to_target"]) == (3, 30, 1.5)
    assert a["reached"] == pytest.approx(2 / 3)
    # area under seed 0's validation loss, by trapezoids over epochs 1..4, per epoch
    auc0 = ((1.0 + 0.6) / 2 + (0.6 + 0.4) / 2 + (0.4 + 0.3) / 2) / 3
    other = [sum((1 / (e + 1) + 1 / (e + 2)) / 2 for e in range(3)) / 3] * 2
    assert a["loss_auc_mean"] == pytest.approx(statistics.mean([auc0, *other]))
    assert a["test_accuracy_mean"] == pytest.approx(0.91)

    s = row(t, "sgd, lr=0.1")
    assert (s["runs"], s["ok"], s["diverged"], s["failed"]) == (3, 2, 1, 0)
    assert s["best_mean"] == pytest.approx(0.71) and s["reached"] == 0 and math.isnan(s["epochs_to_target"])


def test_ranking_puts_reliability_first_and_never_ranks_a_group_without_ok_runs(problem):
    t = api.compare([problem]).table
    # sgd 0.01: its one seed reaches 0.9 at epoch 1; adam: 2 of 3 seeds; sgd 0.1: none (its diverged run does not help)
    assert t["group"].tolist() == ["sgd, lr=0.01", "adam, lr=0.1", "sgd, lr=0.1", "rmsprop, lr=0.1"]
    assert t["rank"].tolist()[:3] == [1, 2, 3] and pd.isna(t["rank"].iloc[3])
    r = row(t, "rmsprop, lr=0.1")
    assert r["failed"] == 1 and math.isnan(r["best_mean"]) and math.isnan(r["loss_auc_mean"])
    # single seed: a mean, no spread and no interval
    one = row(t, "sgd, lr=0.01")
    assert one["best_mean"] == 0.96 and math.isnan(one["best_std"]) and math.isnan(one["best_ci_low"])
    # without a target (val_loss, lower is better) cells rank on the metric alone
    by_loss = api.compare([problem], metric="val_loss").table
    ranked = by_loss.dropna(subset=["rank"])
    assert math.isnan(by_loss["target"].iloc[0])
    # ...and a group where a seed diverged ranks after every group whose seeds all trained
    assert ranked["group"].iloc[-1] == "sgd, lr=0.1" and ranked["best_mean"].iloc[:-1].is_monotonic_increasing


def test_grouping_by_a_chosen_key_pools_the_rest(problem):
    t = api.compare([problem], by=["optimizer.name"]).table
    s = row(t, "sgd")
    assert (s["runs"], s["ok"]) == (4, 3)
    assert s["best_mean"] == pytest.approx(statistics.mean([0.7, 0.72, 0.96]))


def test_performance_profile(tmp_path):
    def runs(times):  # reaching 0.9 at epoch 2; dt scales the time it took
        return [{"name": n, "lr": 0.1, "seed": 0, "status": "ok", "acc": [0.5, 0.95], "dt": dt / 2}
                for n, dt in times.items()] + [{"name": "sgd", "lr": 0.1, "seed": 0, "status": "ok", "acc": [0.1, 0.2]}]
    target = {"metric": "val_accuracy", "value": 0.9}
    p1 = make_dir(tmp_path / "a", "one", runs({"adam": 1.0, "momentum": 2.0}), target=target)
    p2 = make_dir(tmp_path / "b", "two", runs({"adam": 3.0, "momentum": 1.5}), target=target)
    prof = cmp.performance_profile(api.compare([p1, p2]), taus=(1, 1.5, 2, 10)).table.set_index("group")
    # ratios to the best: adam 1 and 2, momentum 2 and 1, sgd never reaches the target
    assert prof.loc["adam, lr=0.1", ["tau=1", "tau=1.5", "tau=2", "tau=10"]].tolist() == [0.5, 0.5, 1.0, 1.0]
    assert prof.loc["momentum, lr=0.1", ["tau=1", "tau=2"]].tolist() == [0.5, 1.0]
    assert prof.loc["sgd, lr=0.1", "tau=10"] == 0 and (prof["problems"] == 2).all()
    r = runner.invoke(app, ["compare", str(p1), str(p2), "--profile", "--format", "csv"])
    assert (r.exit_code == 0
            and pd.read_csv(io.StringIO(r.output)).set_index("group").loc["adam, lr=0.1", "tau=2"] == 1.0)
    r = runner.invoke(app, ["compare", str(p1), str(p2), "--profile", "--cost", "epochs"])
    assert r.exit_code == 0 and "epochs to target" in r.output  # epochs: both reach at 2, a tie


def test_lr_sensitivity(tmp_path):
    best = {0.001: 0.5, 0.01: 0.9, 0.03: 0.95, 0.1: 0.93, 1.0: 0.2}
    runs = [{"name": "sgd", "lr": lr, "seed": s, "status": "ok", "acc": [v - 0.1, v + (s - 0.5) * 0.01]}
            for lr, v in best.items() for s in (0, 1)]
    p = make_dir(tmp_path / "p", "lrs", runs)
    sens = cmp.lr_sensitivity(api.load_problem(p), ["optimizer.name", "optimizer.lr"], "val_accuracy", tolerance=0.05)
    r = sens.iloc[0]
    assert r["group"] == "sgd" and r["best_lr"] == 0.03 and r["best"] == pytest.approx(0.95)
    # within 5% of 0.95 (>= 0.9025): 0.03 and 0.1 are; 0.01 (0.90) is not
    assert (r["lr_low"], r["lr_high"]) == (0.03, 0.1) and r["width_decades"] == pytest.approx(math.log10(0.1 / 0.03))
    assert r["values"] == pytest.approx([0.5, 0.9, 0.95, 0.93, 0.2])
    r = runner.invoke(app, ["compare", str(p), "--lr", "--tolerance", "0.06"])
    assert r.exit_code == 0 and "0.01 – 0.1" in r.output


def test_csv_and_markdown_exports_parse_back(problem):
    table = api.compare([problem]).table
    r = runner.invoke(app, ["compare", str(problem), "--format", "csv"])
    assert r.exit_code == 0
    back = pd.read_csv(io.StringIO(r.output))
    assert back["group"].tolist() == table["group"].tolist()
    for c in ("best_mean", "best_ci_low", "epochs_to_target", "reached", "loss_auc_mean"):
        pd.testing.assert_series_equal(back[c], table[c].astype(float), check_names=False)
    assert json.loads(back["val_loss_curve"].iloc[0]) == pytest.approx(table["val_loss_curve"].iloc[0])

    r = runner.invoke(app, ["compare", str(problem), "--format", "markdown"])
    lines = r.output.strip().splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert set(lines[1].replace("|", "").split()) == {"---"}
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert header[:4] == ["#", "group", "final val_accuracy", "95% CI"]
    md = pd.DataFrame(cells, columns=header)
    assert md["group"].tolist() == table["group"].tolist()
    mean_std = md["best val_accuracy"].str.split(" ± ")
    assert [float(v[0]) for v in mean_std[:3]] == pytest.approx(table["best_mean"][:3].tolist(), abs=5e-5)
    assert float(mean_std[1][1]) == pytest.approx(table["best_std"][1], abs=5e-5)
    assert md["epochs to val_accuracy ≥ 0.9"].tolist()[:3] == ["1 (100%)", "3 (67%)", "never"]
    assert md["#"].iloc[3] == "–" and md["best val_accuracy"].iloc[3] == "—"  # no ok run: no figure, no rank


@pytest.mark.parametrize("args, message", [
    (["--metric", "val_banana"], "--metric: unknown metric 'val_banana'"),
    (["--by", "optimizer.momentum"], "has no column 'optimizer.momentum'"),
    (["--format", "xml"], "error: --format: must be one of ['table', 'csv', 'markdown'], got 'xml'"),
    (["--lr", "--profile"], "choose one"),
])
def test_bad_compare_arguments_are_one_line(problem, args, message):
    r = runner.invoke(app, ["compare", str(problem), *args])
    assert r.exit_code == 2 and message in r.output and r.output.count("\n") == 1


def test_compare_on_a_directory_that_is_not_results(tmp_path):
    r = runner.invoke(app, ["compare", str(tmp_path)])
    assert r.exit_code == 2 and "not a lossbench results directory" in r.output


@pytest.mark.parametrize("kind", ["all", "curves", "train-val", "bars", "lr"])
def test_every_figure_kind_is_written_and_not_empty(tmp_path, kind):
    pytest.importorskip("matplotlib")
    best = {0.01: 0.9, 0.1: 0.95}
    runs = [{"name": n, "lr": lr, "seed": s, "status": "ok", "acc": [v - 0.3, v - 0.1, v + s * 0.01]}
            for n in ("adam", "sgd") for lr, v in best.items() for s in (0, 1)]
    p = make_dir(tmp_path / "p", "figs", runs, target={"metric": "val_accuracy", "value": 0.85})
    out = tmp_path / f"{kind}.png"
    r = runner.invoke(app, ["plot", str(p), "--kind", kind, "--out", str(out), "--log"])
    assert r.exit_code == 0, r.output
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 15_000  # a blank 768x504 PNG is ~5 kB
    svg = tmp_path / f"{kind}.svg"
    assert runner.invoke(app, ["plot", str(p), "--kind", kind, "--out", str(svg)]).exit_code == 0
    text = svg.read_text()
    # titles, axis labels and legends are real text in the figure
    assert {"all": "learning-rate sensitivity", "curves": "mean ± std over seeds", "train-val": "validation (dashed)",
            "bars": "per group", "lr": "learning rate (log scale)"}[kind] in text
    if kind in ("curves", "lr", "all"):
        assert "adam" in text and "sgd" in text


def test_profile_figure_and_its_errors(tmp_path):
    pytest.importorskip("matplotlib")
    target = {"metric": "val_accuracy", "value": 0.9}
    runs = [{"name": "adam", "lr": 0.1, "seed": 0, "status": "ok", "acc": [0.5, 0.95]},
            {"name": "sgd", "lr": 0.1, "seed": 0, "status": "ok", "acc": [0.95, 0.96]}]
    a, b = make_dir(tmp_path / "a", "one", runs, target=target), make_dir(tmp_path / "b", "two", runs, target=target)
    r = runner.invoke(app, ["plot", str(a), str(b), "--kind", "profile", "--out", str(tmp_path / "prof.svg")])
    assert r.exit_code == 0 and "performance profile" in (tmp_path / "prof.svg").read_text()
    r = runner.invoke(app, ["plot", str(a), str(b)])
    assert r.exit_code == 2 and "--kind profile compares several" in r.output
    r = runner.invoke(app, ["plot", str(a), "--out", str(tmp_path / "x.jpg")])
    assert r.exit_code == 2 and "must end in .png, .svg or .pdf" in r.output


def test_plot_without_matplotlib_says_how_to_get_it(problem, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_mpl(name, *a, **k):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_mpl)
    monkeypatch.chdir(Path(__file__).parent.parent)  # in the checkout these tests run from
    r = runner.invoke(app, ["plot", str(problem)])
    assert r.exit_code == 2 and r.output.endswith('lossbench plot needs matplotlib: pip install -e ".[plot]"\n')


def test_what_the_results_cannot_answer_is_one_line(problem, tmp_path):
    empty = make_dir(tmp_path / "empty", "empty", [])  # interrupted before any run finished
    cases = [
        (["compare", str(empty)], "no run has finished yet"),
        (["compare", str(problem), "--metric", "val_mae"],
         "has no 'val_mae'; it has train_loss, val_loss, val_accuracy"),
        (["compare", str(problem), str(problem)], "given twice"),
        (["plot", str(empty)], "no run has finished yet"),
    ]
    for args, message in cases:
        r = runner.invoke(app, args)
        assert r.exit_code == 2 and message in r.output and r.output.count("\n") == 1, (args, r.output)


def test_lr_tied_to_the_optimizer_has_no_sensitivity_curve(tmp_path):
    runs = [{"name": n, "lr": lr, "seed": 0, "status": "ok", "acc": [0.5, 0.9]}
            for n, lr in (("sgd", 0.1), ("adam", 0.01))]
    p = make_dir(tmp_path / "p", "tied", runs)
    r = runner.invoke(app, ["compare", str(p), "--lr"])
    assert r.exit_code == 2 and "takes one value per group" in r.output


def test_a_test_metric_has_no_epoch_to_target(problem):
    t = api.compare([problem], metric="test_accuracy", target=0.9).table
    assert t["target"].isna().all() and t["reached"].isna().all()
    assert row(t, "adam, lr=0.1")["final_mean"] == pytest.approx(0.91)


def test_directories_sweeping_different_keys_are_grouped_by_what_they_share(problem, tmp_path):
    other = make_dir(tmp_path / "q", "other",
                     [{"name": "adam", "lr": 0.1, "seed": 0, "status": "ok", "acc": [0.5, 0.9]}],
                     swept=("optimizer.name",))
    r = runner.invoke(app, ["compare", str(problem), str(other), "--format", "csv"])
    assert r.exit_code == 0
    assert "note: grouped by optimizer.name (the keys every directory sweeps); optimizer.lr pooled" in r.output


def test_lr_sensitivity_skips_lrs_where_a_seed_diverged(tmp_path):
    runs = [{"name": "sgd", "lr": lr, "seed": s, "status": st, "acc": [0.5, v]}
            for lr, v, st in ((0.01, 0.80, "ok"), (0.1, 0.90, "ok"), (1.0, 0.99, "ok")) for s in (0, 1)]
    runs[-1]["status"], runs[-1]["acc"] = "diverged", [0.5, math.nan]  # lr 1.0: one of two seeds diverged
    p = make_dir(tmp_path / "p", "div", runs)
    r = cmp.lr_sensitivity(api.load_problem(p), ["optimizer.name", "optimizer.lr"], "val_accuracy").iloc[0]
    assert r["best_lr"] == 0.1 and r["lr_high"] == 0.1 and r["ok"] == [2, 2, 1] and not r["best_at_edge"]


def test_plot_refuses_results_with_no_ok_run(tmp_path):
    pytest.importorskip("matplotlib")
    p = make_dir(tmp_path / "p", "div",
                 [{"name": "sgd", "lr": 1.0, "seed": 0, "status": "diverged", "acc": [0.5, math.nan]}])
    r = runner.invoke(app, ["plot", str(p)])
    assert r.exit_code == 2 and "no run finished ok" in r.output


def test_a_partial_sweep_is_noted(problem):
    man = json.loads((problem / "manifest.json").read_text())
    (problem / "manifest.json").write_text(json.dumps({**man, "run_ids": [f"id{i}" for i in range(12)]}))
    r = runner.invoke(app, ["compare", str(problem), "--format", "csv"])
    assert r.exit_code == 0 and "note: p: 8 of 12 runs recorded (the sweep is unfinished" in r.output


def _damage(d, how):
    if how == "manifest not JSON":
        (d / "manifest.json").write_text('{"swept": [')
    elif how == "manifest not an object":
        (d / "manifest.json").write_text("[1, 2]")
    elif how == "runs.csv garbage":
        (d / "runs.csv").write_bytes(b"hello world\nfoo,bar,baz\n\xff\n")
    elif how == "runs.csv without columns":
        (d / "runs.csv").write_text("garbage\n")
    elif how == "runs.csv not numbers":
        runs = pd.read_csv(d / "runs.csv")
        runs["wall_time_s"] = "fast"
        runs.to_csv(d / "runs.csv", index=False)
    elif how == "history.csv empty":
        (d / "history.csv").write_text("")
    elif how == "swept key missing":
        man = json.loads((d / "manifest.json").read_text())
        (d / "manifest.json").write_text(json.dumps({**man, "swept": [*man["swept"], "optimizer.momentum"]}))
    return {"manifest": "manifest.json", "runs.csv": "runs.csv", "history": "history.csv", "swept": "runs.csv"}[
        next(k for k in ("manifest", "runs.csv", "history", "swept") if k in how)]


@pytest.mark.parametrize("how", ["manifest not JSON", "manifest not an object", "runs.csv garbage",
                                 "runs.csv without columns", "runs.csv not numbers", "history.csv empty",
                                 "swept key missing"])
@pytest.mark.parametrize("command", ["show", "compare", "plot"])
def test_a_damaged_results_directory_is_one_line_naming_the_file(problem, how, command):
    name = _damage(problem, how)
    r = runner.invoke(app, [command, str(problem)])
    assert (r.exit_code == 2 and r.output.startswith(f"error: {problem / name}: ")
            and r.output.count("\n") == 1), r.output


def test_a_bug_is_not_swallowed_into_an_error_line(problem, monkeypatch):
    def broken(*a, **k):
        raise KeyError("a bug of ours")

    monkeypatch.setattr(api, "compare_problems", broken)
    monkeypatch.setattr(cmp, "compare_problems", broken)
    r = runner.invoke(app, ["compare", str(problem)])
    assert isinstance(r.exception, KeyError) and "error:" not in r.output


def test_cell_labels_name_nested_keys_by_their_path_and_param_groups_compactly():
    from lossbench.analysis.compare import cell_label

    keys = ["optimizer.name", "optimizer.lr", "optimizer.fallback.name", "optimizer.fallback.lr",
            "optimizer.param_groups", "model.hidden", "seed"]
    values = ("muon", 0.02, "adamw", 0.001, [{"params": "output", "name": "adamw", "lr": 0.001},
                                             {"params": ["*.bias"], "weight_decay": 0.0}], [256, 256], "-")
    assert cell_label(keys, values) == ("muon, lr=0.02, fallback=adamw, fallback.lr=0.001, "
                                        "param_groups=[output: adamw, lr=0.001; ['*.bias']: weight_decay=0], "
                                        "hidden=[256, 256]")


def test_param_groups_read_back_from_runs_csv_label_as_when_swept():
    from lossbench.analysis.compare import cell_label

    as_csv = '[{"params": "output", "name": "adamw", "lr": 0.001}]'
    assert cell_label(["optimizer.param_groups"], (as_csv,)) == "param_groups=[output: adamw, lr=0.001]"
    assert cell_label(["model.hidden"], ("[{not json",)) == "hidden=[{not json"
