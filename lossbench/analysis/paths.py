"""`lossbench plot --kind path`: the mountain. Each run's path over the contour map of its
test function (log-scaled levels), its start, its end and the minima marked; one panel
per optimizer (or per learning rate when a single optimizer is swept), a row per test
function when the grid sweeps the dataset, a line per other grid cell; the first seed's
path. `--animate` draws the paths growing, step by step."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from lossbench.analysis import compare as cmp
from lossbench.errors import LossbenchError

GRID = 240  # contour resolution per axis


def panels(p: cmp.Problem) -> tuple[list[str], str | None, list[str]]:
    """(the dataset keys that split rows, the key that splits panels in a row, the keys
    that label lines within one)."""
    keys = [k for k in p.swept if k in p.runs.columns and p.runs[k].nunique(dropna=False) > 1]
    rows = [k for k in keys if k.startswith("dataset")]
    keys = [k for k in keys if k not in rows]
    for split in ("optimizer.name", "optimizer.lr"):
        if split in keys:
            return rows, split, [k for k in keys if k != split]
    return rows, None, keys


def paths(p: cmp.Problem, function_of) -> list[tuple[str, str, str, np.ndarray, str, object]]:
    """(row, panel, line label, the path's points (steps x 2), status, its function) per
    grid cell: its first seed. `function_of(run)`: a runs.csv row's test function."""
    if "x0" not in p.history.columns:
        raise LossbenchError(f"{p.dir}: its history has no path (x0, x1, ...): --kind path draws test functions "
                             "(dataset: rosenbrock, beale, branin, saddle or quadratic with at most 10 dimensions)")
    rows, split, keys = panels(p)
    out = []
    runs = p.runs.sort_values("seed", kind="stable")
    for _, g in cmp._groups(runs, rows + ([split] if split else []) + keys):
        run = g.iloc[0]
        function = function_of(run)
        h = p.history[p.history.run_id == run.run_id].sort_values("epoch")
        xy = h[["x0", "x1" if function.dims > 1 else "x0"]].to_numpy(float)
        out.append((cmp.cell_label(rows, tuple(run[k] for k in rows)) if rows else "",
                    cmp.cell_label([split], (run[split],)) if split else "",
                    cmp.cell_label(keys, tuple(run[k] for k in keys)), xy, run.status, function))
    return out


def _box(function, drawn: list[np.ndarray]) -> tuple[tuple, tuple]:
    """The function's box, widened to the paths (up to three times its size: a diverging
    run's far points would flatten the map)."""
    box = []
    for axis, (lo, hi) in enumerate(function.bounds):
        pts = np.concatenate([d[:, axis] for d in drawn]) if drawn else np.array([])
        pts = pts[np.isfinite(pts)]
        span = hi - lo
        lo2 = max(min([lo, *pts]) if len(pts) else lo, lo - span)
        hi2 = min(max([hi, *pts]) if len(pts) else hi, hi + span)
        pad = 0.04 * (hi2 - lo2)
        box.append((lo2 - pad, hi2 + pad))
    return box[0], box[1]


def _contour(ax, function, box, grid: int = GRID) -> None:
    xs, ys = np.linspace(*box[0], grid), np.linspace(*box[1], grid)
    X, Y = np.meshgrid(xs, ys)
    pts = np.zeros(X.shape + (function.dims,))
    pts[..., 0], pts[..., 1] = X, Y  # a higher-dimensional function: the plane of its first two coordinates
    F = function.value(pts)
    shift = 0.0 if F.min() > 0 else 1e-3 - F.min()  # log levels need positive values (the saddle's are not)
    Z = F + shift
    levels = np.logspace(math.log10(Z.min()), math.log10(Z.max()), 30)
    ax.contourf(X, Y, Z, levels=levels, norm=LogNorm(), cmap="Greys_r", alpha=0.55)
    ax.contour(X, Y, Z, levels=levels, norm=LogNorm(), colors="0.35", linewidths=0.4)
    for m in function.minima:
        ax.plot(m[0], m[1], marker="*", markersize=13, color="gold", markeredgecolor="black", zorder=5)
    ax.set_xlim(*box[0])
    ax.set_ylim(*box[1])
    ax.set_xlabel("x0")
    ax.set_ylabel("x1")


def figure(p: cmp.Problem, function_of, drawn=None, grid: int = GRID) -> tuple[Figure, list]:
    """The path figure: a row per test function (when the grid sweeps the dataset), a
    panel per optimizer; and per path its (line, end marker, points with the start) for
    `animate` to redraw."""
    drawn = drawn if drawn is not None else paths(p, function_of)
    rows = list(dict.fromkeys(d[0] for d in drawn))
    names = [list(dict.fromkeys(d[1] for d in drawn if d[0] == r)) for r in rows]
    cols = max(len(n) for n in names) if len(rows) > 1 else min(len(names[0]), 3)
    n_rows = len(rows) if len(rows) > 1 else math.ceil(len(names[0]) / cols)
    fig = Figure(figsize=(5.2 * cols, 4.6 * n_rows), layout="constrained")
    handles, at = [], 0
    for r, row in enumerate(rows):
        mine = [d for d in drawn if d[0] == row]
        function = mine[0][5]
        start = np.asarray(function.start[:2], float)
        box = _box(function, [np.vstack([start, d[3]]) for d in mine])
        for c, name in enumerate(names[r]):
            at = r * cols + c + 1 if len(rows) > 1 else at + 1
            ax = fig.add_subplot(n_rows, cols, at)
            _contour(ax, function, box, grid)
            for _, _, label, xy, status, _ in (d for d in mine if d[1] == name):
                xy = np.vstack([start, xy])
                (line,) = ax.plot(xy[:, 0], xy[:, 1], "-", linewidth=1.3, label=_legend(label, status, xy, box))
                (end,) = ax.plot(xy[-1:, 0], xy[-1:, 1], "X", color=line.get_color(), markersize=8,
                                 markeredgecolor="black", zorder=6)
                handles.append((line, end, xy))
            ax.plot(*start, "o", color="white", markeredgecolor="black", markersize=8, zorder=6, label="start")
            ax.set_title(", ".join(t for t in (function.name if len(rows) > 1 else "", name) if t) or p.name)
            ax.legend(fontsize=7, loc="best", framealpha=0.8)
    steps = max(len(d[3]) for d in drawn)
    what = ", ".join(dict.fromkeys(d[5].name for d in drawn))
    fig.suptitle(f"{p.name}: {what}, {steps} steps (★ minimum, ● start, ✕ end; first seed)")
    return fig, handles


def _legend(label: str, status: str, xy: np.ndarray, box) -> str:
    """A path's legend entry: its grid cell (nothing for the only one), and why its end
    may not show (a diverged run; an end off the map, where it is)."""
    label = "" if label == "all" else label
    end = xy[-1]
    inside = all(np.isfinite(end)) and box[0][0] <= end[0] <= box[0][1] and box[1][0] <= end[1] <= box[1][1]
    if status == "diverged":
        label += " (diverged)"
    elif not inside:
        label += f" (ends off the map, at ({end[0]:.3g}, {end[1]:.3g}))"
    return label.strip() or "path"


def animate(p: cmp.Problem, function_of, path: Path, frames: int = 40) -> Path:
    """The paths growing, as a GIF (Pillow) or MP4 (ffmpeg), by the file's suffix: the map
    is drawn once, each frame moves the lines' ends."""
    from matplotlib import animation

    writer = {".gif": "pillow", ".mp4": "ffmpeg"}.get(path.suffix.lower())
    if writer is None:
        raise LossbenchError(f"--animate: {path}: the file must end in .gif or .mp4")
    if not animation.writers.is_available(writer):
        raise LossbenchError(f"--animate: {path}: matplotlib has no {writer} writer here "
                             f"({'install ffmpeg, or write a .gif' if writer == 'ffmpeg' else 'install pillow'})")
    fig, handles = figure(p, function_of, grid=GRID // 2)  # a coarser map: every frame redraws it
    fig.canvas.draw()
    fig.set_layout_engine("none")  # laid out once, not per frame
    steps = max(len(xy) for _, _, xy in handles) - 1
    title = fig._suptitle.get_text()
    w = animation.writers[writer](fps=12)
    try:
        with w.saving(fig, str(path), dpi=60):
            for n in sorted({max(1, round(steps * (i + 1) / frames)) for i in range(frames)}):
                for line, end, xy in handles:
                    line.set_data(xy[: n + 1, 0], xy[: n + 1, 1])
                    end.set_data(xy[min(n, len(xy) - 1):][:1, 0], xy[min(n, len(xy) - 1):][:1, 1])
                fig.suptitle(title.replace(f"{steps} steps", f"step {n} of {steps}"))
                w.grab_frame()
    except OSError as e:
        raise LossbenchError(f"--animate: {path}: cannot be written: {e.strerror or e}") from None
    return path
