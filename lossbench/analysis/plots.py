"""PNG/SVG figures of a comparison (the optional extra `lossbench[plot]`: matplotlib).

Every figure is drawn from the same aggregation as `compare` (analysis/compare.py), on a
matplotlib `Figure` object rather than pyplot's global state, so plotting from a
notebook or a thread does not disturb anything else. It draws problems already loaded
(lossbench.api.plot reads the results directories). matplotlib is imported only when a
figure is drawn: it is optional, and slow to import.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from lossbench.analysis import compare as cmp
from lossbench.errors import LossbenchError, install_hint

# path: analysis/paths.py
KINDS = ("all", "curves", "train-val", "bars", "lr", "hp", "stats", "improvement", "rungs", "profile", "path")


def _figure(rows: int, cols: int, size=(6.4, 4.2)):
    try:  # the optional extra, imported on first use (see the module docstring)
        from matplotlib.figure import Figure
    except ImportError:
        raise LossbenchError(f"lossbench plot needs matplotlib: {install_hint('plot')}") from None
    return Figure(figsize=(size[0] * cols, size[1] * rows), layout="constrained")


def _label(metric: str) -> str:
    return metric.replace("_", " ")


def _colors(ax, n: int) -> None:
    """Ten distinct colours by default; past ten groups, twenty, so no two lines share one."""
    if n > 10:
        from matplotlib import colormaps  # loaded by _figure already; optional, so not at the top

        ax.set_prop_cycle(color=[colormaps["tab20"](i % 20) for i in range(n)])


def draw_curves(ax, p: cmp.Problem, by: list[str], metric: str, log: bool, target: float | None = None) -> None:
    """Mean over the seeds per group, with a ±std band; the target as a dotted line.
    `log` applies to a loss only: accuracy on a log axis hides what matters."""
    groups = cmp.curves(p, by, metric)
    _colors(ax, len(groups))
    for label, c in groups.items():
        line, = ax.plot(c["epoch"], c["mean"], label=label, lw=1.6)
        std = c["std"].fillna(0.0)
        ax.fill_between(c["epoch"], c["mean"] - std, c["mean"] + std, color=line.get_color(), alpha=0.2, lw=0)
    if target is not None:
        ax.axhline(target, color="black", ls=":", lw=1.2, label=f"target {target:g}")
    ax.set(title=f"{_label(metric)} by epoch (mean ± std over seeds)", xlabel="epoch",
           ylabel=_label(metric) + (" (log scale)" if log and cmp.is_loss(metric) else ""))
    if log and cmp.is_loss(metric):
        ax.set_yscale("log")
    _legend(ax)


def draw_train_val(ax, p: cmp.Problem, by: list[str], log: bool) -> None:
    """Training loss solid, validation loss dashed, same colour per group: the gap shows over-fitting."""
    train, val = cmp.curves(p, by, "train_loss"), cmp.curves(p, by, "val_loss")
    _colors(ax, len(train))
    for label, c in train.items():
        line, = ax.plot(c["epoch"], c["mean"], lw=1.6, label=label)
        if label in val:
            ax.plot(val[label]["epoch"], val[label]["mean"], lw=1.6, ls="--", color=line.get_color())
    mixed = len(cmp.losses_of([p])) > 1
    ax.set(title="training (solid) vs validation (dashed) loss"
                 + ("\n(different losses: each curve in its own loss's units)" if mixed else ""), xlabel="epoch",
           ylabel="loss" + (" (log scale)" if log else ""))
    if log:
        ax.set_yscale("log")
    _legend(ax)


def draw_bars(ax, comparison: cmp.Comparison) -> None:
    """Best metric per group, mean with std error bars, in rank order; red where a seed
    diverged or failed. Points, not bars, on an axis zoomed to the data and labelled so:
    0.83 against 0.85 shows, and no bar length pretends to start at zero. Each mean is
    written next to its point; the target is a dotted line."""
    table, metric = comparison.table, comparison.metric
    t = table[table["best_mean"].notna() | table["final_mean"].notna()]
    col = "best" if metric.startswith(("val_", "train_")) else "final"
    colors = ["tab:red" if r.ok < r.runs else "tab:blue" for r in t.itertuples()]
    x, mean, std = list(range(len(t))), t[f"{col}_mean"].to_numpy(float), t[f"{col}_std"].fillna(0.0).to_numpy(float)
    for xi, m, sd, c in zip(x, mean, std, colors):
        ax.errorbar([xi], [m], yerr=[sd], fmt="o", capsize=5, color=c, ms=7)
        ax.annotate(f"{m:.4g}", (xi, m + sd), textcoords="offset points", xytext=(0, 4), ha="center", va="bottom",
                    fontsize=7 if len(x) > 6 else 8, rotation=90 if len(x) > 6 else 0)
    ax.set_xticks(x, t["group"], rotation=30, ha="right", fontsize=8)
    ax.set_xlim(-0.5, len(t) - 0.3)
    targets = t["target"].dropna().unique()
    if len(targets) == 1 and col == "best":
        ax.axhline(targets[0], color="black", ls=":", lw=1.2, label=f"target {targets[0]:g}")
        ax.legend(fontsize=8, loc="best")
    better = "higher" if comparison.higher_is_better else "lower"
    dropped = len(table) - len(t)
    ax.set(title=f"{col} {_label(metric)} per group, mean ± std ({better} is better"
                 f"{'; red: some seeds diverged or failed' if 'tab:red' in colors else ''}"
                 f"{f'; {dropped} group(s) with no ok run not shown' if dropped else ''})",
           ylabel=f"{_label(metric)}\n(axis zoomed to the data: not from 0)")
    ax.margins(y=0.15)


def draw_lr(ax, sens, metric: str, tolerance: float) -> None:
    """Best metric against lr per group; the lr range within `tolerance` of the group's
    best is drawn as a thick band under the curve, the best lr as a star."""
    _colors(ax, len(sens))
    for _, row in sens.iterrows():
        bars = ax.errorbar(row["lrs"], row["values"], yerr=[0.0 if math.isnan(s) else s for s in row["stds"]],
                           marker="o", capsize=3, label=row["group"] or "all")
        color = bars.lines[0].get_color()
        if not math.isnan(row["lr_low"]):
            ax.axvspan(row["lr_low"], row["lr_high"], color=color, alpha=0.12, lw=0)
            ax.plot([row["lr_low"], row["lr_high"]], [row["best"]] * 2, color=color, lw=5, alpha=0.5,
                    solid_capstyle="butt")
            ax.plot([row["best_lr"]], [row["best"]], marker="*", ms=14, color=color, mec="black")
    ax.set_xscale("log")
    ax.set(title=f"learning-rate sensitivity: best {_label(metric)}\nband: the lrs within {tolerance:.0%} of the "
                 "group's best; ★ its best lr", xlabel="learning rate (log scale)", ylabel=_label(metric))
    _legend(ax)


def draw_hp(ax, p: cmp.Problem, comparison: cmp.Comparison, key: str, by_given: bool = False) -> None:
    """The metric (mean over seeds of each run's best) against `key`, one point per value
    (each search trial is its own), one colour per group of the other keys; a star on each
    group's best. The x axis is logarithmic where the search drew `key` on a log scale, or,
    for a grid, where its values span more than two decades."""
    xs = cmp.hp_values(p, key)
    keys = cmp.hp_groups(p, comparison.keys, key, by_given)
    metric = comparison.metric
    table = cmp.aggregate(p, [*keys, key], metric, None)
    table = table[table[key] != "-"]
    y = table["best_mean"].where(table["best_mean"].notna(), table["final_mean"]).to_numpy(float)
    table = table.assign(x=pd.to_numeric(table[key]).to_numpy(float), y=y)
    up = comparison.higher_is_better
    groups = list(cmp._groups(table, keys))
    _colors(ax, len(groups))
    for label, g in groups:
        g = g[np.isfinite(g["y"])]
        if not len(g):
            continue
        pts = ax.plot(g["x"], g["y"], "o", alpha=0.8, label=cmp.cell_label(keys, label) or "all")
        best = g.loc[g["y"].idxmax() if up else g["y"].idxmin()]
        ax.plot([best["x"]], [best["y"]], marker="*", ms=15, color=pts[0].get_color(), mec="black")
    x = xs.dropna().to_numpy(float)
    log = p.searched.get(key) == "log" or (key not in p.searched and x.size and x.min() > 0
                                           and x.max() / x.min() > 100)
    if log:
        ax.set_xscale("log")
    seeds = "mean over seeds" if p.runs["seed"].nunique() > 1 else "one seed"
    ax.set(title=f"{p.name}: best {_label(metric)} against {key}\n{seeds}, one point per value; ★ each group's best",
           xlabel=f"{key}{' (log scale)' if log else ''}", ylabel=_label(metric))
    _legend(ax)


def draw_rungs(ax, p: cmp.Problem, metric: str) -> None:
    """Successive halving as it happened: each trial's metric by epoch (mean over its
    seeds), the pruned ones grey and ending with a cross at their rung, the finished ones
    in colour; a dotted line at each rung."""
    col = _history_metric(metric)
    status = p.runs.set_index("run_id")["status"]
    hist = p.history.assign(status=p.history["run_id"].map(status))
    hist = hist.merge(p.runs[["run_id", *p.swept]], on="run_id")
    finished = 0
    for key, g in cmp._groups(hist, p.swept):
        c = g.groupby("epoch")[col].mean()
        if (g["status"] == "pruned").all():
            ax.plot(c.index, c.to_numpy(), color="0.6", lw=0.8, alpha=0.7)
            ax.plot(c.index[-1:], c.to_numpy()[-1:], "x", color="0.45", ms=4)
        elif (g["status"] == "ok").any():
            finished += 1
            ax.plot(c.index, c.to_numpy(), lw=1.8, label=cmp.cell_label(p.swept, key))
    pruned = p.runs[p.runs["status"] == "pruned"]
    for epoch in sorted(pruned["epochs"].unique()):
        ax.axvline(epoch, color="black", ls=":", lw=0.9)
    trials = sum(1 for _ in cmp._groups(p.runs, p.swept))
    ax.set(title=f"{p.name}: successive halving, {trials} trials, {finished} trained to the end\n"
                 f"grey: pruned (x where it stopped); dotted: the rungs; mean over seeds",
           xlabel="epoch", ylabel=_label(col))
    _legend(ax)


def draw_seeds(ax, p: cmp.Problem, comparison: cmp.Comparison) -> None:
    """The best metric of every seed, per group (when lr is not swept): how far seeds spread."""
    metric, keys = comparison.metric, comparison.keys
    runs = cmp.per_run(p, metric, None).merge(p.runs[["run_id", *keys]], on="run_id")
    col = "best" if metric.startswith(("val_", "train_")) else "final"
    groups = list(comparison.table[comparison.table["problem"] == p.name]["group"])
    labels = [cmp.cell_label(keys, tuple(r[k] for k in keys)) for _, r in runs.iterrows()]
    runs = runs.assign(group=labels)
    for i, g in enumerate(groups):
        pts = runs[(runs.group == g) & (runs.status == "ok")][col].to_numpy(float)
        spread = (np.arange(len(pts)) - (len(pts) - 1) / 2) * 0.08
        ax.plot(i + spread, pts, "o", color="tab:blue", alpha=0.7, ms=6)
    ax.set_xticks(range(len(groups)), groups, rotation=30, ha="right", fontsize=8)
    ax.set(title=f"{col} {_label(metric)} of each seed (optimizer.lr is not swept)",
           ylabel=f"{_label(metric)}\n(axis zoomed to the data)")


def draw_stats(ax, comparison: cmp.Comparison) -> None:
    """IQM per group with its 95% bootstrap interval as a bar, the median as a diamond; one
    row per group (long labels read horizontally), best at the top. A group whose IQM lands
    on a diverged run is drawn at the worst end of the axis, in red, and says so."""
    t = comparison.table[comparison.table["n"] > 0]
    up, metric = comparison.higher_is_better, comparison.metric
    vals = np.concatenate([t[c].to_numpy(float) for c in ("iqm", "iqm_ci_low", "iqm_ci_high", "median")])
    finite = vals[np.isfinite(vals)]
    lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    pad = (hi - lo) * 0.08 or 0.01
    worst = lo - pad if up else hi + pad  # where "diverged" is drawn

    def at(v):
        return worst if math.isinf(v) else v

    y = np.arange(len(t))[::-1]
    for yi, r in zip(y, t.itertuples()):
        color = "tab:red" if math.isinf(r.iqm) else "tab:blue"
        if not math.isnan(r.iqm_ci_low):
            ax.plot([at(r.iqm_ci_low), at(r.iqm_ci_high)], [yi, yi], color=color, lw=6, alpha=0.35,
                    solid_capstyle="butt")
        ax.plot([at(r.iqm)], [yi], "o", color=color, ms=7)
        ax.plot([at(r.median)], [yi], "D", color="black", ms=4, mfc="none")
        note = "diverged" if math.isinf(r.iqm) else f"{r.iqm:.4g}"
        ax.annotate(f"{note}  (n={r.n})", (at(r.iqm), yi), textcoords="offset points", xytext=(0, 7), ha="center",
                    fontsize=7)
    ax.set_yticks(y, t["group"], fontsize=8)
    ax.plot([], [], "o", color="tab:blue", label="IQM")
    ax.plot([], [], "s", color="tab:blue", alpha=0.35, ms=9, label="95% bootstrap interval of the IQM")
    ax.plot([], [], "D", color="black", mfc="none", ms=4, label="median")
    ax.legend(fontsize=8, loc="lower right" if up else "lower left")
    ax.set_ylim(-0.6, len(t) - 0.4)
    ax.set_xlim(min(lo, worst) - pad / 2, max(hi, worst) + pad / 2)
    weak = "; fewer than 5 runs: weak" if (t["n"] < 5).any() else ""
    ax.set(title=f"{cmp.rank_column(metric)} {_label(metric)} per group over seeds ({'higher' if up else 'lower'} is "
                 f"better{weak})", xlabel=f"{_label(metric)} (axis zoomed to the data)")


def draw_improvement(ax, matrix) -> None:
    """P(row > column) for every pair of groups: 0.5 is a coin flip; ties count half."""
    n = len(matrix)
    im = ax.imshow(matrix.to_numpy(), cmap="RdBu", vmin=0, vmax=1)
    ax.figure.colorbar(im, ax=ax, label="P(row > column)", shrink=0.8)
    ax.set_xticks(range(n), matrix.columns, rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(n), matrix.index, fontsize=8)
    if n <= 15:
        for i in range(n):
            for j in range(n):
                v = matrix.iat[i, j]
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7 if n > 8 else 8,
                        color="white" if abs(v - 0.5) > 0.3 else "black")
    ax.set(title="probability of improvement\nP(a run of the row's group beats one of the column's; ties half)",
           xlabel="column group", ylabel="row group")


def draw_profile(ax, profile: cmp.Profile, cost: str) -> None:
    ratios = profile.ratios
    _colors(ax, len(ratios))
    finite = ratios.to_numpy()[~(ratios.to_numpy() == math.inf)]
    top = max(2.0, float(finite.max()) * 1.1) if finite.size else 2.0
    for group, r in ratios.iterrows():
        taus = sorted(v for v in r if math.isfinite(v))
        xs = [1.0, *taus, top]
        ys = [sum(t <= x for t in taus) / len(r) for x in xs]
        ax.step(xs, ys, where="post", label=group, lw=1.6)
    n = ratios.shape[1]
    ax.set(title=f"performance profile over {n} problem{'s' * (n != 1)} ({cost.replace('_', ' ')})",
           xlabel="τ (within this factor of the best)", ylabel="fraction of problems",
           ylim=(-0.02, 1.02))
    ax.set_xscale("log")
    _legend(ax)


def _history_metric(metric: str) -> str:
    """Test metrics exist only at the end of a run; their curve is the validation one."""
    return "val_" + metric[5:] if metric.startswith("test_") else metric


def _legend(ax) -> None:
    handles = ax.get_legend_handles_labels()[0]
    if len(handles) > 6:  # a long legend goes beside the panel, not over the curves
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    elif handles:
        ax.legend(fontsize=8, loc="best")


def check_kind(kind: str, n_problems: int) -> None:
    """A figure kind that exists, for as many problems as it draws."""
    if kind not in KINDS:
        raise LossbenchError(f"--kind: unknown figure {kind!r}; choose one of {', '.join(KINDS)}")
    if kind != "profile" and n_problems != 1:
        raise LossbenchError(f"--kind {kind} draws one results directory; --kind profile compares several")


def plot(problems: list[cmp.Problem], kind: str = "all", metric: str | None = None, by: list[str] | None = None,
         out: str | Path | None = None, log: bool = False, cost: str = "time_to_target",
         tolerance: float = 0.05, target: float | None = None, hp: str = "optimizer.lr") -> Path:
    """Draw `kind` for `problems` and save it (default: plot-KIND.png in the first
    problem's directory); returns the file written. `hp`: --kind hp's x axis."""
    check_kind(kind, len(problems))
    comparison = cmp.compare_problems(problems, by, metric, target)
    p = problems[0]
    if kind != "profile" and not (p.runs.status == "ok").any():
        raise LossbenchError(f"{p.dir}: no run finished ok (all diverged or failed); nothing to plot")
    if kind == "profile":
        if not comparison.with_target:
            raise LossbenchError("--kind profile needs a target: set one in the configs or give --metric and --target")
        prof = cmp.performance_profile(comparison, cost)
        if not prof.solved:
            raise LossbenchError(f"no group reached {comparison.metric} {'≥' if comparison.higher_is_better else '≤'} "
                                 "the target on at least half its seeds, on any problem: there is no profile to draw; "
                                 "try an easier --target")
        fig = _figure(1, 1)
        draw_profile(fig.add_subplot(), prof, cost)
    elif kind in ("stats", "improvement"):
        n = len(comparison.table)
        fig = _figure(1, 1, (7.2, max(2.8, 1.4 + 0.4 * n)) if kind == "stats" else (3.0 + 0.55 * n, 2.4 + 0.5 * n))
        ax = fig.add_subplot()
        draw_stats(ax, comparison) if kind == "stats" else draw_improvement(ax, cmp.improvement_matrix(p, comparison))
    elif kind == "rungs":
        if not (p.runs["status"] == "pruned").any():
            raise LossbenchError(f"{p.dir}: no run was pruned (the config has no prune, or its sweep has not "
                                 "reached a rung); --kind rungs draws successive halving")
        fig = _figure(1, 1, (7.6, 4.4))
        draw_rungs(fig.add_subplot(), p, comparison.metric)
    elif kind == "hp":
        fig = _figure(1, 1)
        draw_hp(fig.add_subplot(), p, comparison, hp, by is not None)
    elif kind == "all":
        fig = _all_panels(p, comparison, log, tolerance)
    else:
        fig = _figure(1, 1)
        _panel(fig.add_subplot(), kind, p, comparison, log, tolerance)
    return save(fig, Path(out) if out is not None else p.dir / f"plot-{kind}.png")


def save(fig, path: Path) -> Path:
    """Write a figure where --out says (PNG, SVG or PDF); errors are one line."""
    if path.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise LossbenchError(f"--out: {path}: the file must end in .png, .svg or .pdf")
    try:
        fig.savefig(path, dpi=120)
    except OSError as e:
        raise LossbenchError(f"--out: {path}: cannot be written: {e.strerror or e}") from None
    return path


MARKERS = {"valley": "o", "steep": "^", "minimum": "v"}  # lr-find's suggestions


def lr_find(report, out: str | Path) -> Path:
    """`lossbench lr-find`'s figure: each optimizer's smoothed loss against the rate (log
    axis), its suggestions marked on its curve; saved to `out`."""
    fig = _figure(1, 1, (7.2, 4.6))
    ax = fig.add_subplot()
    tested = [t for t in report.tested if t.result is not None]
    _colors(ax, len(tested))
    for t in tested:
        r = t.result
        line, = ax.plot(r.lrs, r.smoothed, lw=1.6, label=t.label)
        for rule, (lr, _) in r.suggestions.items():
            if math.isfinite(lr):  # on the curve at the suggested rate (minimum's is a tenth of the lowest point's)
                y = np.interp(np.log(lr), np.log(r.lrs), r.smoothed)
                ax.plot([lr], [y], MARKERS[rule], ms=9, color=line.get_color(), mec="black")
    for rule in dict.fromkeys(k for t in tested for k in t.result.suggestions):
        ax.plot([], [], MARKERS[rule], color="lightgray", mec="black", label=f"{rule} suggestion")
    # y from the lowest point to above where the suggestions' part of the curve starts
    # (fastai's trim drops the first tenth): the rise at the end runs off the top
    low = min(t.result.min_loss for t in tested)
    high = max(float(t.result.smoothed[min(t.result.steps // 10, len(t.result.lrs) - 1)]) for t in tested)
    if math.isfinite(high) and high > low:
        ax.set_ylim(low - 0.05 * (high - low), high + 0.5 * (high - low))
    ax.set_xscale("log")
    ax.set(title=f"{report.name}\nlearning-rate range test: {report.steps} steps, lr {report.start:g} to "
                 f"{report.end:g}", xlabel="learning rate (log scale)", ylabel="training loss (smoothed)")
    ax.legend(fontsize=8, loc="best")
    return save(fig, Path(out))


def _panel(ax, kind: str, p: cmp.Problem, comparison: cmp.Comparison, log: bool, tolerance: float) -> None:
    metric, keys = comparison.metric, comparison.keys
    if kind == "curves":
        targets = comparison.table["target"].dropna().unique()
        draw_curves(ax, p, keys, _history_metric(metric), log, targets[0] if len(targets) == 1 else None)
    elif kind == "train-val":
        draw_train_val(ax, p, keys, log)
    elif kind == "bars":
        draw_bars(ax, comparison)
    else:
        keys = cmp.hp_groups(p, keys, "optimizer.lr")  # a search's trials are points, not groups
        draw_lr(ax, cmp.lr_sensitivity(p, keys, metric, tolerance), metric, tolerance)


def _all_panels(p: cmp.Problem, comparison: cmp.Comparison, log: bool, tolerance: float):
    fig = _figure(2, 2)
    axes = fig.subplots(2, 2).ravel()
    for ax, kind in zip(axes[:3], ("curves", "train-val", "bars")):
        _panel(ax, kind, p, comparison, log, tolerance)
    try:
        _panel(axes[3], "lr", p, comparison, log, tolerance)
    except LossbenchError:  # lr not swept on its own axis: how the seeds spread instead
        axes[3].clear()
        draw_seeds(axes[3], p, comparison)
    fig.suptitle(f"{p.name}: {len(p.runs)} run{'s' * (len(p.runs) != 1)}")
    return fig


def draw_landscape(land, out: str | Path) -> Path:
    """A Landscape (sweep.landscape) as a PNG/SVG/PDF: the loss along the line, or
    the plane's contours (log-spaced levels) beside its surface, or the PCA path over the
    loss in its plane."""
    path = Path(out)
    if path.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise LossbenchError(f"--out: {path}: the file must end in .png, .svg or .pdf")
    at = " at A" if len(land.runs) > 1 else ""
    sharp = f"sharpness (top Hessian eigenvalue{at}) {land.sharpness:.4g}" if math.isfinite(land.sharpness) else ""
    runs = land.labels[0] if len(land.labels) == 1 else "\n".join(f"{ab}: {x}" for ab, x in zip("AB", land.labels))
    title = f"{runs}\n{land.samples} training examples"
    if land.kind == "line":
        fig = _figure(1, 1)
        ax = fig.add_subplot()
        ax.plot(land.coords[0], land.loss, color="C0")
        ends = ("final A", "final B") if len(land.runs) > 1 else ("initial", "final")
        for x, name in zip((0.0, 1.0), ends):
            ax.axvline(x, color="0.6", lw=0.8, ls="--")
            ax.annotate(name, (x, 1.0), xycoords=("data", "axes fraction"), ha="center", va="bottom", fontsize=8)
        wide = 0 < 10 * land.loss.min() < land.loss.max()  # log only for a range over a decade
        ax.set(xlabel="alpha", ylabel="training loss", yscale="log" if wide else "linear")
    else:
        fig = _figure(1, 2, size=(5.6, 4.6))
        ax = fig.add_subplot(1, 2, 1)
        a, b = np.meshgrid(*land.coords)
        z = land.loss
        finite = z[np.isfinite(z)]
        lo, hi = (max(finite.min(), 1e-12), max(finite.max(), 1e-12)) if finite.size else (1e-12, 1.0)
        levels = np.geomspace(lo, hi * (1 + 1e-9), 30) if hi > lo else 10
        cs = ax.contour(a, b, z, levels=levels, cmap="viridis", linewidths=0.8)
        fig.colorbar(cs, ax=ax, label="training loss (log-spaced levels)")
        if land.kind == "pca":
            ax.plot(land.path[:, 0], land.path[:, 1], "o-", color="C3", ms=3, lw=1.2, label="epochs")
            ax.plot(*land.path[0], "s", color="C3", ms=7, label="initial")
            ax.plot(*land.path[-1], "*", color="k", ms=12, label="final")
            ax.legend(fontsize=8)
            ax.set(xlabel=f"PC1 ({100 * land.explained[0]:.1f}% of variance)",
                   ylabel=f"PC2 ({100 * land.explained[1]:.1f}% of variance)")
        else:
            ax.plot(0, 0, "*", color="k", ms=12)
            ax.set(xlabel="direction 1 (filter-normalized)", ylabel="direction 2 (filter-normalized)")
        ax3 = fig.add_subplot(1, 2, 2, projection="3d")
        ax3.plot_surface(a, b, np.log10(np.clip(z, 1e-12, None)), cmap="viridis", linewidth=0, antialiased=True)
        ax3.set(xlabel="direction 1" if land.kind == "plane" else "PC1",
                ylabel="direction 2" if land.kind == "plane" else "PC2", zlabel="log10 training loss")
    fig.suptitle(f"{title}\n{sharp}" if sharp else title, fontsize=10)
    try:
        fig.savefig(path, dpi=120)
    except OSError as e:
        raise LossbenchError(f"--out: {path}: cannot be written: {e.strerror or e}") from None
    return path
