"""Terminal rendering of results: the per-cell Rich table with sparklines."""

from __future__ import annotations

import math

import pandas as pd
from rich.console import Console
from rich.table import Table
from rich.text import Text

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


def summary_table(summary: pd.DataFrame, title: str, target: dict | None) -> Table:
    col = summary.attrs.get("rank_by", "final_val_loss")
    table = Table(title=title, title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("grid cell")
    table.add_column(f"{col} (mean ± std)", justify="right")
    test_cols = [c[:-5] for c in summary.columns if c.startswith("test_") and c.endswith("_mean")]
    if len(test_cols) > 1:  # the loss is already ranked on; keep the table narrow
        test_cols = [c for c in test_cols if c != "test_loss"]
    for c in test_cols:
        table.add_column(c, justify="right")
    if target:
        table.add_column(f"epochs to {target['metric']} {'≥' if 'loss' not in target['metric'] and 'mae' not in target['metric'] else '≤'} {target['value']:g}", justify="right")
    table.add_column("ok/div/fail", justify="center")
    table.add_column("val loss", no_wrap=True)
    for i, row in summary.iterrows():
        ranked = not math.isnan(row[f"{col}_mean"])
        cells = [str(i + 1) if ranked else "–", str(row["cell"]), _pm(row[f"{col}_mean"], row[f"{col}_std"])]
        cells += [_pm(row[f"{c}_mean"], row[f"{c}_std"]) for c in test_cols]
        if target:
            e = row["epochs_to_target"]
            cells.append("never" if math.isnan(e) else f"{e:g} ({row['reached_target']:.0%})")
        status = f"{row['ok']}/{row['diverged']}/{row['failed']}"
        cells.append(Text(status, style="red") if row["diverged"] or row["failed"] else status)
        cells.append(sparkline(row["val_loss_curve"]))
        table.add_row(*cells, style="bold green" if i == 0 and ranked else None)
    return table


def print_summary(console: Console, summary: pd.DataFrame, runs: pd.DataFrame, title: str, target: dict | None) -> None:
    console.print(summary_table(summary, title, target))
    counts = runs["status"].value_counts()
    console.print(f"{len(runs)} runs: {counts.get('ok', 0)} ok, {counts.get('diverged', 0)} diverged, "
                  f"{counts.get('failed', 0)} failed")
    failed = runs[runs.status == "failed"]
    for _, r in failed.head(5).iterrows():
        console.print(f"[red]failed[/red] {r['run_id']}: {r['error']}")


def print_preview(console: Console, exp, out_dir) -> None:
    """What `validate` and `run --dry-run` show: the grid size and its first runs."""
    n_cells = len(exp.cells)
    seeds = exp.config["seeds"]
    console.print(f"[green]{exp.source}: valid[/green] — {n_cells} grid cell{'s' * (n_cells != 1)} × "
                  f"{len(seeds)} seed{'s' * (len(seeds) != 1)} = {len(exp.runs)} runs -> {out_dir}")
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
        if enabled:
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
