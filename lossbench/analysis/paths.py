"""`lossbench plot --kind path`: the mountain. Each run's path over the contour map of its
test function (log-scaled levels), its start, its end and the minima marked; one panel
per optimizer (or per learning rate when a single optimizer is swept), a line per other
grid cell; the first seed's path. `--animate` draws the paths growing, step by step."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from lossbench.analysis import compare as cmp
from lossbench.errors import LossbenchError

GRID = 240  # contour resolution per axis


def panels(p: cmp.Problem) -> tuple[str | None, list[str]]:
    """(the key that splits panels, the keys that label lines within one)."""
    keys = [k for k in p.swept if k in p.runs.columns and p.runs[k].nunique(dropna=False) > 1]
    for split in ("optimizer.name", "optimizer.lr"):
        if split in keys:
            return split, [k for k in keys if k != split]
    return None, keys


def paths(p: cmp.Problem, dims: int) -> list[tuple[str, str, np.ndarray, str]]:
    """(panel, line label, the path's points (steps x 2), status) per grid cell: its first seed."""
    if "x0" not in p.history.columns:
        raise LossbenchError(f"{p.dir}: its history has no path (x0, x1, ...): --kind path draws test functions "
                             "(dataset: rosenbrock, beale, branin, saddle or quadratic with at most 10 dimensions)")
    split, keys = panels(p)
    out = []
    runs = p.runs.sort_values("seed", kind="stable")
    for _, g in cmp._groups(runs, ([split] if split else []) + keys):
        run = g.iloc[0]
        h = p.history[p.history.run_id == run.run_id].sort_values("epoch")
        xy = h[["x0", "x1" if dims > 1 else "x0"]].to_numpy(float)
        panel = cmp.cell_label([split], (run[split],)) if split else ""
        out.append((panel, cmp.cell_label(keys, tuple(run[k] for k in keys)), xy, run.status))
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


def figure(p: cmp.Problem, function, drawn=None, grid: int = GRID) -> tuple[Figure, list]:
    """The path figure, and per path its (line, end marker, points with the start) for
    `animate` to redraw."""
    drawn = drawn if drawn is not None else paths(p, function.dims)
    names = list(dict.fromkeys(d[0] for d in drawn))
    cols = min(len(names), 3)
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(5.2 * cols, 4.6 * rows), layout="constrained")
    start = np.asarray(function.start[:2], float)
    box = _box(function, [np.vstack([start, d[2]]) for d in drawn])
    handles = []
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        _contour(ax, function, box, grid)
        for _, label, xy, status in (d for d in drawn if d[0] == name):
            xy = np.vstack([start, xy])
            (line,) = ax.plot(xy[:, 0], xy[:, 1], "-", linewidth=1.3,
                              label=label + (" (diverged)" if status == "diverged" else ""))
            (end,) = ax.plot(xy[-1:, 0], xy[-1:, 1], "X", color=line.get_color(), markersize=8,
                             markeredgecolor="black", zorder=6)
            handles.append((line, end, xy))
        ax.plot(*start, "o", color="white", markeredgecolor="black", markersize=8, zorder=6, label="start")
        ax.set_title(name or p.name)
        ax.legend(fontsize=7, loc="best", framealpha=0.8)
    steps = max(len(d[2]) for d in drawn)
    fig.suptitle(f"{p.name}: {function.name}, {steps} steps (★ minimum, ● start, ✕ end; first seed)")
    return fig, handles


def animate(p: cmp.Problem, function, path: Path, frames: int = 40) -> Path:
    """The paths growing, as a GIF (Pillow) or MP4 (ffmpeg), by the file's suffix: the map
    is drawn once, each frame moves the lines' ends."""
    from matplotlib import animation

    writer = {".gif": "pillow", ".mp4": "ffmpeg"}.get(path.suffix.lower())
    if writer is None:
        raise LossbenchError(f"--animate: {path}: the file must end in .gif or .mp4")
    if not animation.writers.is_available(writer):
        raise LossbenchError(f"--animate: {path}: matplotlib has no {writer} writer here "
                             f"({'install ffmpeg, or write a .gif' if writer == 'ffmpeg' else 'install pillow'})")
    fig, handles = figure(p, function, grid=GRID // 2)  # a coarser map: every frame redraws it
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
