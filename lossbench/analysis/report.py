"""Terminal rendering of results: the per-cell Rich table with sparklines."""

from __future__ import annotations

import math

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from lossbench.analysis.compare import Comparison
from lossbench.engine.metrics import higher_is_better

BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], width: int = 16) -> str:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return ""
    if len(vals) > width:  # keep the first and last point, sample between
        vals = [vals[round(i * (len(vals) - 1) / (width - 1))] for i in range(width)]
    lo, hi = min(vals), max(vals)
    span = hi - lo or 1.0
    return "".join(BARS[min(int((v - lo) / span * (len(BARS) - 1) + 0.5), len(BARS) - 1)] for v in vals)


def _pm(mean, std, digits=4) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    s = f"{mean:.{digits}f}"
    if std is not None and not (isinstance(std, float) and math.isnan(std)):
        s += f" ± {std:.{digits}f}"
    return s


def _ci(lo, hi, digits=4) -> str:
    return "—" if lo is None or math.isnan(lo) else f"[{lo:.{digits}f}, {hi:.{digits}f}]"


def _to_target(row) -> str:
    e = row["epochs_to_target"]
    if math.isnan(row["reached"]):  # no target
        return "—"
    return "never" if math.isnan(e) else f"{e:g} ({row['reached']:.0%})"


def _status(row):
    status = f"{row['ok']}/{row['diverged']}/{row['failed']}"
    return Text(status, style="red") if row["diverged"] or row["failed"] else status


def _rank(row) -> str:
    return "–" if pd.isna(row["rank"]) else f"{row['rank']:.0f}"


def _first(row):
    return "bold green" if not pd.isna(row["rank"]) and row["rank"] == 1 else None


def summary_table(summary: pd.DataFrame, metric: str, title: str, target: dict | None) -> Table:
    """The table `run` and `show` print: one row per grid cell, best first, ranked on `metric`."""
    table = Table(title=title, title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("grid cell")
    table.add_column(f"best {metric} (mean ± std)", justify="right")
    test_cols = [c[:-5] for c in summary.columns if c.startswith("test_") and c.endswith("_mean")]
    if len(test_cols) > 1:  # keep the table narrow: the loss is not comparable across losses anyway
        test_cols = [c for c in test_cols if c != "test_loss"]
    for c in test_cols:
        table.add_column(c, justify="right")
    if target:
        table.add_column(f"epochs to {target['metric']} {'≥' if higher_is_better(metric) else '≤'} "
                         f"{target['value']:g}", justify="right")
    table.add_column("ok/div/fail", justify="center")
    table.add_column("val loss", no_wrap=True)
    for _, row in summary.iterrows():
        cells = [_rank(row), escape(str(row["group"])), _pm(row["best_mean"], row["best_std"])]
        cells += [_pm(row[f"{c}_mean"], row[f"{c}_std"]) for c in test_cols]
        if target:
            cells.append(_to_target(row))
        cells += [_status(row), sparkline(row["val_loss_curve"])]
        table.add_row(*cells, style=_first(row))
    return table


def print_summary(console: Console, summary: pd.DataFrame, metric: str, runs: pd.DataFrame, title: str,
                  target: dict | None) -> None:
    console.print(summary_table(summary, metric, title, target))
    counts = runs["status"].value_counts()
    console.print(f"{len(runs)} runs: {counts.get('ok', 0)} ok, {counts.get('diverged', 0)} diverged, "
                  f"{counts.get('failed', 0)} failed")
    failed = runs[runs.status == "failed"]
    for _, r in failed.head(5).iterrows():
        console.print(f"[red]failed[/red] {r['run_id']}: {escape(str(r['error']))}")


def compare_cells(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """The comparison as plain text cells: the terminal table and the Markdown export."""
    table, metric = comparison.table, comparison.metric
    several = table["problem"].nunique() > 1
    targets = table["target"].dropna().unique()
    sign = "≥" if comparison.higher_is_better else "≤"
    to = f"epochs to {metric} {sign} {targets[0]:g}" if len(targets) == 1 else "epochs to target"
    cols = ["#", *(["problem"] if several else []), "group", f"final {metric}", "95% CI", f"best {metric}", "95% CI",
            to, "steps", "time (s)", "loss AUC", "ok/div/fail", "val loss"]
    rows = []
    for _, row in table.iterrows():
        rows.append([_rank(row), *([str(row["problem"])] if several else []), str(row["group"]),
                     _pm(row["final_mean"], row["final_std"]), _ci(row["final_ci_low"], row["final_ci_high"]),
                     _pm(row["best_mean"], row["best_std"]), _ci(row["best_ci_low"], row["best_ci_high"]),
                     _to_target(row), _num(row["steps_to_target"], 0), _num(row["time_to_target"], 3),
                     _pm(row["loss_auc_mean"], row["loss_auc_std"]), f"{row['ok']}/{row['diverged']}/{row['failed']}",
                     sparkline(row["val_loss_curve"])])
    return cols, rows


def compare_table(comparison: Comparison) -> Table:
    """`lossbench compare`: every figure of compare.aggregate for each group."""
    t = Table(title=f"{comparison.metric} ({'higher' if comparison.higher_is_better else 'lower'} is better); "
                    "mean ± std and 95% interval over seeds", title_justify="left")
    table = comparison.table
    cols, rows = compare_cells(comparison)
    for c in cols:
        # numbers may wrap at "±" on a narrow terminal rather than be cut to "0.98…"
        t.add_column(c, justify="left" if c in ("problem", "group", "val loss") else "right", no_wrap=c == "val loss")
    for (_, row), cells in zip(table.iterrows(), rows):
        cells = [escape(c) for c in cells]
        status = -2
        if row["diverged"] or row["failed"]:
            cells[status] = Text(cells[status], style="red")
        t.add_row(*cells, style=_first(row))
    return t


def profile_table(profile: pd.DataFrame, cost: str) -> Table:
    """The fractions of a compare.Profile's table, one row per group."""
    t = Table(title=f"performance profile: fraction of problems on which the {cost.replace('_', ' ')} is within "
                    "a factor τ of the best", title_justify="left")
    t.add_column("group")
    t.add_column("problems", justify="right")
    taus = [c for c in profile.columns if c.startswith("tau=")]
    for c in taus:
        t.add_column(c.replace("tau", "τ"), justify="right")
    for _, row in profile.iterrows():
        t.add_row(escape(str(row["group"])), str(row["problems"]), *[f"{row[c]:.2f}" for c in taus])
    return t


def lr_table(sens: pd.DataFrame, metric: str, tolerance: float) -> Table:
    several = sens["problem"].nunique() > 1
    t = Table(title=f"learning-rate sensitivity: best {metric} per lr (mean over seeds); the range within "
                    f"{tolerance:.0%} of the best, where every seed trained without diverging", title_justify="left",
              caption="* the best lr is at the edge of the grid: the true optimum may lie outside it"
              if sens["best_at_edge"].any() else None, caption_justify="left")
    columns = ("group", "best lr", f"best {metric}", "lr range", "width (decades)", "per lr")
    for c in (*(["problem"] if several else []), *columns):
        t.add_column(c, justify="left" if c in ("problem", "group", "per lr") else "right")
    for _, row in sens.iterrows():
        per = "  ".join(f"{lr:g}: {_num(v)}" + (f" ({k}/{n} ok)" if k < n else "")
                        for lr, v, k, n in zip(row["lrs"], row["values"], row["ok"], row["runs"]))
        rng = "—" if math.isnan(row["lr_low"]) else f"{row['lr_low']:g} – {row['lr_high']:g}"
        best_lr = _num(row["best_lr"], 4, "g") + ("*" if row["best_at_edge"] else "")
        t.add_row(*([escape(str(row["problem"]))] if several else []), escape(str(row["group"])), best_lr,
                  _num(row["best"]), rng, _num(row["width_decades"], 2), escape(per))
    return t


def _num(v, digits=4, kind="f") -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}{kind}}" if kind == "f" \
        else f"{v:{kind}}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def print_preview(console: Console, exp, out_dir) -> None:
    """What `validate` and `run --dry-run` show: the grid size and its first runs."""
    n_cells = len(exp.cells)
    seeds = exp.config["seeds"]
    console.print(f"[green]{exp.source}: valid[/green] — {_count(n_cells, 'grid cell')} × "
                  f"{_count(len(seeds), 'seed')} = {_count(len(exp.runs), 'run')} -> {out_dir}")
    table = Table(title_justify="left")
    table.add_column("run_id")
    for k in exp.swept:
        table.add_column(k)
    table.add_column("seed", justify="right")
    for spec in exp.runs[:12]:
        table.add_row(spec.run_id, *[str(spec.cell.get(k, "")) for k in exp.swept], str(spec.seed))
    console.print(table)
    if len(exp.runs) > 12:
        console.print(f"… and {len(exp.runs) - 12} more")


class Progress:
    """Rich progress for `lossbench run`: runs done/total, the current run's epoch and
    loss, and an ETA. A no-op when disabled (not a terminal, or --quiet)."""

    def __init__(self, console: Console, enabled: bool):
        self.enabled = enabled
        if enabled:  # rich.progress is imported only when a bar is shown, not for -q or a pipe
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self.bar = RichProgress(TextColumn("runs"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                    TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.description}"),
                                    console=console, transient=True)

    def __enter__(self):
        if self.enabled:
            self.bar.__enter__()
            self.task = self.bar.add_task("", total=None)
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self.bar.__exit__(*exc)

    def on_event(self, kind: str, **info) -> None:
        if not self.enabled:
            return
        if kind == "start":
            self.bar.update(self.task, total=info["total"], completed=info["done"])
        elif kind == "run_start":
            self.epochs = info["spec"].config["train"].get("epochs", 10)
            self.bar.update(self.task, description=f"{info['spec'].run_id} starting")
        elif kind == "epoch":
            row = info["row"]
            self.bar.update(self.task, description=f"{info['spec'].run_id} epoch {row['epoch']}/{self.epochs} "
                                                   f"train_loss {row['train_loss']:.4g} val_loss {row['val_loss']:.4g}")
        elif kind == "run_end":
            self.bar.advance(self.task)


def catalog_table(kind: str, rows: list[tuple[str, dict, str]]) -> Table:
    """`lossbench list`: one registry's items, their options and summaries."""
    table = Table(title=kind, title_justify="left")
    table.add_column("name", style="bold cyan")
    table.add_column("options: default (allowed)")
    table.add_column("what it is")
    for name, params, doc in rows:
        table.add_row(escape(name), escape("\n".join(f"{p}={v}" for p, v in params.items())), escape(doc))
    return table
