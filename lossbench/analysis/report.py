"""Terminal rendering of results: the per-cell Rich table with sparklines."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd
from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from lossbench.analysis.compare import Comparison, cell_label, format_value
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


# -- fitting a table to the terminal ----------------------------------------------------------

SPARK, NARROW_SPARK = 16, 8


@dataclass
class Col:
    """A column to fit: `kind` says how it may give up width. Labels wrap at spaces, numbers
    wrap after "±" or at a space, a sparkline is narrowed and then dropped; a column with a
    `drop` rank goes (lowest first) when nothing else helps. No cell is ever cut."""

    header: str
    cells: list
    kind: str = "number"  # label | number | spark | fixed
    justify: str = "right"
    drop: int | None = None
    curves: list = field(default_factory=list)  # spark: the curves, drawn at the width chosen
    styles: list = field(default_factory=list)
    short: str | None = None  # a shorter header for a narrow terminal (the title says the rest)


def _plain(c) -> str:
    return c.plain if isinstance(c, Text) else str(c)


def _words(text: str) -> list[str]:
    return text.replace(" ±", "_±").split(" ") if text else [""]  # "0.98 ±" stays on one line


def _natural(col: Col) -> int:
    return max([cell_len(w) for w in _words(col.header)] + [cell_len(_plain(c)) for c in col.cells] + [1])


def _wrapped(col: Col) -> int:
    words = [cell_len(w) for c in col.cells for w in _words(_plain(c))]
    return max(words + [cell_len(w) for w in _words(col.header)] + [1])


def fit_table(cols: list[Col], width: int | None, **table_args) -> Table:
    """A Rich table of `cols` no wider than `width` (None: as wide as it needs, for a pipe).
    In order, until it fits: narrow the sparkline, drop it, wrap labels, wrap numbers, drop
    the columns that have a `drop` rank. A caption names what was left out."""
    cols = list(cols)
    widths = {id(c): _natural(c) for c in cols}
    spark_w = {id(c): SPARK for c in cols if c.kind == "spark"}
    dropped: list[str] = []

    def need() -> int:
        return sum(widths[id(c)] for c in cols) + 3 * len(cols) + 1

    def steps():
        for c in [c for c in cols if c.kind == "spark"]:
            spark_w[id(c)] = widths[id(c)] = max(cell_len(c.header), NARROW_SPARK)
            yield
            cols.remove(c)
            dropped.append(c.header)
            yield
        for c in cols:
            if c.kind == "label":
                widths[id(c)] = _wrapped(c)
        yield
        for c in cols:
            if c.short:
                c.header = c.short
                widths[id(c)] = _natural(c)
        yield
        for c in cols:
            if c.kind == "number":
                widths[id(c)] = _wrapped(c)
        yield
        for rank in sorted({c.drop for c in cols if c.drop is not None}):
            for c in [c for c in cols if c.drop == rank]:  # both 95% CI columns at once
                cols.remove(c)
                dropped.append(c.header)
            yield

    if width is None:  # a pipe or a file: every header on one line
        widths = {id(c): max(cell_len(_plain(x)) for x in [c.header, *c.cells]) for c in cols}
    else:
        for _ in steps():
            if need() <= width:
                break
        room = width - need()
        for part in ("cells", "header"):  # give back what is left: first unwrap cells, then headers
            for kind in ("number", "label", "fixed"):
                for c in cols:
                    if c.kind == kind and room > 0:
                        full = max(cell_len(_plain(x)) for x in ([c.header] if part == "header" else c.cells))
                        grow = min(room, max(0, full - widths[id(c)]))
                        widths[id(c)] += grow
                        room -= grow
    if dropped:
        table_args["caption"] = (f"not shown at {width} columns: {', '.join(dict.fromkeys(dropped))} "
                                 "(a wider terminal, or --format csv, shows every figure)")
        table_args["caption_justify"] = "left"
    t = Table(**table_args)
    for c in cols:
        t.add_column(c.header, justify=c.justify, width=widths[id(c)], no_wrap=c.kind == "spark")
    n = max((len(c.cells) for c in cols), default=0)
    styles = next((c.styles for c in cols if c.styles), [None] * n)
    for i in range(n):
        row = [sparkline(c.curves[i], spark_w[id(c)]) if c.kind == "spark" else c.cells[i] for c in cols]
        t.add_row(*row, style=styles[i] if i < len(styles) else None)
    return t


def _pm(mean, std, digits=4) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    s = _fixed(mean, digits)
    if std is not None and not (isinstance(std, float) and math.isnan(std)):
        s += f" ± {_fixed(std, digits)}"
    return s


def _fixed(v: float, digits: int) -> str:
    """v with `digits` decimals, or in e-notation where they would print it as 0 (a test
    function's loss near its minimum: 3.2e-07, not 0.0000)."""
    return f"{v:.2e}" if v != 0 and abs(v) < 0.5 * 10.0**-digits else f"{v:.{digits}f}"


def _ci(lo, hi, digits=4) -> str:
    return "—" if lo is None or math.isnan(lo) else f"[{_stat(lo, digits)}, {_stat(hi, digits)}]"


def _stat(v, digits=4) -> str:
    """A median, IQM or bound: infinite where it lands on a diverged run (stats.py counts them worst)."""
    return "diverged" if isinstance(v, float) and math.isinf(v) else _num(v, digits)


def _to_target(row) -> str:
    e = row["epochs_to_target"]
    if math.isnan(row["reached"]):  # no target
        return "—"
    return "never" if math.isnan(e) else f"{e:g} ({row['reached']:.0%})"


def _status_text(row) -> str:
    """ok/diverged/failed counts, or "pruned at E" for a group prune stopped after epoch E
    (its figures are not final ones: none are shown)."""
    if row.get("pruned", 0) and not row["ok"] and not row["diverged"] and not row["failed"]:
        return f"pruned at {row['pruned_at']:.0f}"
    return f"{row['ok']}/{row['diverged']}/{row['failed']}"


def _status(row):
    status = _status_text(row)
    if status.startswith("pruned"):
        return Text(status, style="dim")
    return Text(status, style="red") if row["diverged"] or row["failed"] else status


def _rank(row) -> str:
    return "–" if pd.isna(row["rank"]) else f"{row['rank']:.0f}"


def _first(row):
    return "bold green" if not pd.isna(row["rank"]) and row["rank"] == 1 else None


def summary_table(summary: pd.DataFrame, metric: str, title: str, target: dict | None,
                  width: int | None = None) -> Table:
    """The table `run` and `show` print: one row per grid cell, best first, ranked on `metric`;
    fitted to `width` columns (None: full width)."""
    rows = [row for _, row in summary.iterrows()]
    styles = [_first(r) for r in rows]
    cols = [Col("#", [_rank(r) for r in rows], "fixed", styles=styles),
            Col("grid cell", [escape(str(r["group"])) for r in rows], "label", "left"),
            Col(f"best {metric}", [_pm(r["best_mean"], r["best_std"]) for r in rows], short="best")]
    if "iqm" in summary.columns:  # robust figures over seeds (stats.py): go first on a narrow terminal
        cols += [Col("median", [_stat(r["median"]) for r in rows], drop=1),
                 Col("IQM", [_stat(r["iqm"]) for r in rows], drop=1)]
    test_cols = [c[:-5] for c in summary.columns if c.startswith("test_") and c.endswith("_mean")]
    if len(test_cols) > 1:  # keep the table narrow: the loss is not comparable across losses anyway
        test_cols = [c for c in test_cols if c != "test_loss"]
    cols += [Col(c, [_pm(r[f"{c}_mean"], r[f"{c}_std"]) for r in rows], drop=2, short=c.replace("_", " "))
             for c in test_cols]
    if target:
        sign = "≥" if higher_is_better(target["metric"]) else "≤"
        cols.append(Col(f"epochs to {target['metric']} {sign} {target['value']:g}", [_to_target(r) for r in rows],
                        short=f"epochs to {sign} {target['value']:g}"))
    cols.append(Col("ok/div/fail", [_status(r) for r in rows], "fixed", "center"))
    cols.append(Col("val loss", [], "spark", "left", curves=[r["val_loss_curve"] for r in rows]))
    cols[-1].cells = [sparkline(c) for c in cols[-1].curves]
    return fit_table(cols, width, title=f"{title}: best {metric}, mean ± std over seeds", title_justify="left")


PRUNED_ROWS = 3  # pruned cells the summary lists (those that lasted longest); compare lists all


def print_summary(console: Console, summary: pd.DataFrame, metric: str, runs: pd.DataFrame, title: str,
                  target: dict | None) -> None:
    only_pruned = (summary.get("pruned", 0) > 0) & (summary["ok"] + summary["diverged"] + summary["failed"] == 0)
    hidden = summary[only_pruned].iloc[PRUNED_ROWS:]
    console.print(summary_table(summary.drop(index=hidden.index), metric, title, target, width_of(console)))
    if len(hidden):
        console.print(f"… and {_count(len(hidden), 'more pruned cell')} (`lossbench compare` lists every cell)",
                      highlight=False)
    counts = runs["status"].value_counts()
    pruned = f"{counts['pruned']} pruned, " if counts.get("pruned", 0) else ""
    console.print(f"{_count(len(runs), 'run')}: {counts.get('ok', 0)} ok, {pruned}{counts.get('diverged', 0)} "
                  f"diverged, {counts.get('failed', 0)} failed", highlight=False)
    failed = runs[runs.status == "failed"]
    for _, r in failed.head(5).iterrows():
        console.print(f"[red]failed[/red] {r['run_id']}: {escape(str(r['error']))}", highlight=False)
    if len(failed) > 5:
        console.print(f"… and {len(failed) - 5} more failed (see runs.csv)", highlight=False)


def width_of(console: Console) -> int | None:
    """The width to fit tables to: the terminal's, or None (full width) for a pipe or a file."""
    return console.width if console.is_terminal else None


def compare_cells(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """The comparison as plain text cells: the terminal table and the Markdown export."""
    table, metric = comparison.table, comparison.metric
    several = table["problem"].nunique() > 1
    targets = table["target"].dropna().unique()
    sign = "≥" if comparison.higher_is_better else "≤"
    to = f"epochs to {metric} {sign} {targets[0]:g}" if len(targets) == 1 else "epochs to target"
    cols = ["#", *(["problem"] if several else []), "group", f"final {metric}", "95% CI", f"best {metric}", "95% CI",
            "median", "IQM", "IQM 95% CI", to, "steps", "time (s)", "loss AUC", "ok/div/fail", "val loss"]
    rows = []
    for _, row in table.iterrows():
        rows.append([_rank(row), *([str(row["problem"])] if several else []), str(row["group"]),
                     _pm(row["final_mean"], row["final_std"]), _ci(row["final_ci_low"], row["final_ci_high"]),
                     _pm(row["best_mean"], row["best_std"]), _ci(row["best_ci_low"], row["best_ci_high"]),
                     _stat(row["median"]), _stat(row["iqm"]), _ci(row["iqm_ci_low"], row["iqm_ci_high"]),
                     _to_target(row), _num(row["steps_to_target"], 0), _num(row["time_to_target"], 3),
                     _pm(row["loss_auc_mean"], row["loss_auc_std"]), _status_text(row),
                     sparkline(row["val_loss_curve"])])
    return cols, rows


def compare_table(comparison: Comparison, width: int | None = None) -> Table:
    """`lossbench compare`: every figure of compare.aggregate for each group, fitted to `width`."""
    table = comparison.table
    heads, rows = compare_cells(comparison)
    kinds = {"#": "fixed", "problem": "label", "group": "label", "ok/div/fail": "fixed", "val loss": "spark"}
    drops = {"95% CI": 1, "steps": 2, "time (s)": 3, "loss AUC": 4, "median": 5, "IQM 95% CI": 6}
    styles = [_first(r) for _, r in table.iterrows()]
    cols = []
    for i, h in enumerate(heads):
        cells = [escape(r[i]) for r in rows]
        if h == "ok/div/fail":
            cells = [Text(c, style="red") if r["diverged"] or r["failed"] else c
                     for c, (_, r) in zip(cells, table.iterrows())]
        kind = kinds.get(h, "number")
        short = h.split(" ")[0] if h.startswith(("final ", "best ")) else \
            f"epochs to {h.split(' ', 3)[3]}" if h.startswith("epochs to ") and h != "epochs to target" else None
        cols.append(Col(h, cells, kind, "left" if kind in ("label", "spark") else "right", drop=drops.get(h),
                        curves=list(table["val_loss_curve"]) if kind == "spark" else [],
                        styles=styles if i == 0 else [], short=short))
    unranked = "; NOT RANKED: the groups use different losses" if table["rank"].isna().all() and \
        comparison.warnings else ""
    return fit_table(cols, width, title=f"{comparison.metric} ({'higher' if comparison.higher_is_better else 'lower'}"
                     f" is better); mean ± std and 95% t-interval over seeds; median and IQM of the "
                     f"{rank_of(comparison)} with a 95% bootstrap interval{unranked}", title_justify="left")


def rank_of(comparison: Comparison) -> str:
    return "final value" if comparison.metric.startswith("test_") else "best epoch"


def versus_table(view: pd.DataFrame, comparison: Comparison, alpha: float, width: int | None = None) -> Table:
    """`compare --vs`: each group against its baseline on paired seeds, one row each."""
    several = view["problem"].nunique() > 1
    level = f"{1 - alpha:.0%}"
    cols = [*([Col("problem", [escape(str(x)) for x in view["problem"]], "label", "left")] if several else []),
            Col("group", [escape(str(x)) for x in view["group"]], "label", "left"),
            Col("baseline", [escape(str(x)) for x in view["baseline"]], "label", "left", drop=3),
            Col("pairs", [str(x) for x in view["pairs"]], "fixed"),
            Col("win rate", [_num(x, 2) for x in view["win_rate"]], short="wins"),
            Col("mean diff", [_diff(x) for x in view["diff_mean"]], short="diff"),
            Col(f"{level} CI", [_ci(lo, hi) for lo, hi in zip(view["diff_ci_low"], view["diff_ci_high"])], drop=1),
            Col("P(X>Y)", [_num(x, 2) for x in view["p_improve"]]),
            Col(f"P {level} CI", [_ci(lo, hi, 2) for lo, hi in zip(view["pi_ci_low"], view["pi_ci_high"])], drop=1),
            Col("Wilcoxon p", [_num(x, 3) for x in view["p_value"]], short="p", drop=2),
            Col("Holm p", [_num(x, 3) for x in view["p_holm"]], short="p adj"),
            Col("verdict", [Text(v, style={"better": "green", "worse": "red"}.get(v, "")) for v in view["verdict"]],
                "fixed", "left")]
    if view["note"].astype(bool).any():
        cols.append(Col("note", [escape(str(x)) for x in view["note"]], "label", "left"))
    title = (f"{comparison.metric} ({'higher' if comparison.higher_is_better else 'lower'} is better) against the "
             f"baseline on the same seeds: mean diff = group - baseline; P(X>Y) = chance a run of the group beats "
             f"one of the baseline; verdict at alpha {alpha:g} after Holm's correction")
    return fit_table(cols, width, title=title, title_justify="left")


def _diff(v) -> str:
    return "diverged" if isinstance(v, float) and math.isinf(v) else "—" if pd.isna(v) else f"{v:+.4f}"


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


def lr_table(sens: pd.DataFrame, metric: str, tolerance: float, key: str = "optimizer.lr") -> Table:
    """compare --lr, or --hp KEY: the best metric per value of the key, per group."""
    several = sens["problem"].nunique() > 1
    lr = "lr" if key == "optimizer.lr" else key
    what = "learning-rate" if key == "optimizer.lr" else key
    notes = [f"* the best {lr} is at the edge of the values tried: the true optimum may lie outside them"] \
        if sens["best_at_edge"].any() else []
    if sens.get("pruned", pd.Series([0])).sum():
        notes.append(f"{sens['pruned'].sum()} pruned values left out (no final figure): the range spans the trials "
                     "that finished")
    t = Table(title=f"{what} sensitivity: best {metric} per {lr} (mean over seeds); the range within "
                    f"{tolerance:.0%} of the best, where every seed trained without diverging", title_justify="left",
              caption="\n".join(notes) or None, caption_justify="left")
    columns = ("group", f"best {lr}", f"best {metric}", f"{lr} range", "width (decades)", f"per {lr}")
    for c in (*(["problem"] if several else []), *columns):
        t.add_column(c, justify="left" if c in ("problem", "group", "per lr") else "right")
    for _, row in sens.iterrows():
        items = [f"{lr:g}: {_num(v)}" + (f" ({k}/{n} ok)" if k < n else "")
                 for lr, v, k, n in zip(row["lrs"], row["values"], row["ok"], row["runs"])]
        per = "  ".join(_around(items, row["lrs"], row["best_lr"]))
        rng = "—" if math.isnan(row["lr_low"]) else f"{row['lr_low']:g} – {row['lr_high']:g}"
        best_lr = _num(row["best_lr"], 4, "g") + ("*" if row["best_at_edge"] else "")
        t.add_row(*([escape(str(row["problem"]))] if several else []), escape(str(row["group"])), best_lr,
                  _num(row["best"]), rng, _num(row["width_decades"], 2), escape(per))
    return t


def _around(items: list[str], values: list, best, most: int = 7) -> list[str]:
    """At most `most` of a search's many values: those around the best, '…' for the rest
    (--format csv has them all)."""
    if len(items) <= most:
        return items
    i = values.index(best) if best in values else 0
    lo = max(0, min(i - most // 2, len(items) - most))
    return ["…"] * (lo > 0) + items[lo:lo + most] + ["…"] * (lo + most < len(items))


def _num(v, digits=4, kind="f") -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else _fixed(v, digits) if kind == "f" \
        else f"{v:{kind}}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def print_preview(console: Console, exp, out_dir, plan=None) -> None:
    """What `validate` and `run --dry-run` show: the grid size, what is recorded already,
    what would train and about how long it takes, and the first runs."""
    n_cells = len(exp.cells)
    seeds = exp.config["seeds"]
    cells = _count(n_cells, "grid cell")
    if exp.trials:
        cells = f"{_count(n_cells // exp.trials, 'grid cell')} × {_count(exp.trials, 'search trial')}"
    console.print(f"[green]{exp.source}: valid[/green] — {cells} × "
                  f"{_count(len(seeds), 'seed')} = {_count(len(exp.runs), 'run')} -> {out_dir}")
    if plan is not None:
        line = f"{out_dir}: {plan.recorded} of {_count(plan.total, 'run')} already recorded; "
        if not plan.todo:
            line += "nothing to train"
        else:
            line += f"{plan.todo} will train"
            if plan.seconds is not None:
                line += (f", about {_clock(plan.seconds)} on {_count(plan.workers, 'worker')} "
                         f"(estimated {plan.basis})")
        console.print(line, highlight=False)
        if plan.prune:
            console.print(plan.prune, highlight=False)
        for parts in plan.parts:
            console.print(f"tensors by optimizer in {parts}", highlight=False, markup=False)
    table = Table(title_justify="left")
    table.add_column("run_id")
    for k in exp.swept:
        table.add_column(k)
    table.add_column("seed", justify="right")
    for spec in exp.runs[:12]:
        table.add_row(spec.run_id, *[format_value(spec.cell[k]) if k in spec.cell else "" for k in exp.swept],
                      str(spec.seed))
    console.print(table)
    if len(exp.runs) > 12:
        console.print(f"… and {len(exp.runs) - 12} more")


def run_label(cell: dict, seed: int) -> str:
    """What a run is, in the summary's words: 'adam, lr=0.001, seed 1'."""
    return f"{cell_label(list(cell), tuple(cell.values()))}, seed {seed}"


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class Progress:
    """Progress for `lossbench run`. On a terminal, a Rich bar: runs done/total, elapsed,
    ETA, and what trains now ('adam, lr=0.001, seed 1 · epoch 3/10 · val_loss 0.41').
    Elsewhere (nohup, CI, a batch scheduler's log), one line per finished run with
    done/total and an ETA. Nothing with --quiet."""

    def __init__(self, console: Console, enabled: bool, lines: bool = False):
        self.enabled, self.lines, self.console = enabled, lines and not enabled, console
        self.others: dict = {}  # run_id -> how many more runs its stack trains (None: not its stack's first)
        if enabled:  # rich.progress is imported only when a bar is shown, not for -q or a pipe
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            class Bar(RichProgress):
                """The bar on one line, what trains on the next: a long run name never squeezes the bar."""

                def get_renderables(self):
                    yield self.make_tasks_table(self.tasks)
                    for task in self.tasks:
                        if task.description:
                            yield Text(task.description)  # wraps at spaces on a narrow terminal

            self.bar = Bar(TextColumn("runs"), BarColumn(bar_width=20), MofNCompleteColumn(), TimeElapsedColumn(),
                           TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=True)

    def __enter__(self):
        if self.enabled:
            self.bar.__enter__()
            self.task = self.bar.add_task("", total=None)
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self.bar.__exit__(*exc)

    def on_event(self, kind: str, **info) -> None:
        if self.lines:
            self._line(kind, **info)
        if not self.enabled:
            return
        if kind == "start":
            self.bar.update(self.task, total=info["total"], completed=info["done"])
        elif kind == "run_start":
            spec, stack = info["spec"], info.get("stack") or [info["spec"]]
            # a stack's runs train together: its first run speaks for them
            self.others[spec.run_id] = len(stack) - 1 if spec is stack[0] else None
            if self.others[spec.run_id] is not None:
                self.bar.update(self.task, description=f"{self._label(spec)} · starting")
        elif kind == "epoch":
            row, spec = info["row"], info["spec"]
            if self.others.get(spec.run_id, 0) is None:
                return
            self.bar.update(self.task, description=f"{self._label(spec)} · epoch {row['epoch']}/"
                                                   f"{spec.config['train'].get('epochs', 10)} · "
                                                   f"val_loss {row['val_loss']:.4g}")
        elif kind == "run_end":
            self.bar.advance(self.task)

    def _label(self, spec) -> str:
        others = self.others.get(spec.run_id)
        return run_label(spec.cell, spec.seed) + (f" and {others} more, stacked" if others else "")

    def _line(self, kind: str, **info) -> None:
        import time

        if kind == "start":
            self.t0, self.first_done = time.monotonic(), info["done"]
        elif kind == "rung":
            self.console.print(f"rung at epoch {info['epoch']}: {info['kept']} of {info['kept'] + info['pruned']} "
                               f"trials go on by {info['metric']}, {info['pruned']} pruned", highlight=False)
        elif kind == "phase":  # prune: what trains now (the runs' own lines would be one per run per rung)
            to = f"to epoch {', '.join(map(str, info['epochs']))}" if info["epochs"] else "to the end"
            self.console.print(f"training {_count(info['runs'], 'run')} {to}", highlight=False)
        elif kind == "run_end" and info["record"]["status"] != "pruned":  # the rung's line says those
            rec, done, total = info["record"], info["done"], info["total"]
            trained = done - self.first_done
            elapsed = time.monotonic() - self.t0
            eta = f"ETA {_clock(elapsed / trained * (total - done))}" if done < total else "done"
            took = rec["wall_time_s"]
            self.console.print(f"[{done}/{total}] {escape(run_label(rec['cell'], rec['seed']))}: {rec['status']} in "
                               f"{took:.{2 if took < 10 else 0}f} s · elapsed {_clock(elapsed)} · {eta}",
                               highlight=False)


def catalog_table(kind: str, rows: list[tuple[str, dict, str]]) -> Table:
    """`lossbench list`: one registry's items, their options and summaries."""
    caption = None
    if kind == "optimizers":  # an option of the config section, not of any one optimizer
        caption = ("Every optimizer section also takes param_groups: parts of the model with other settings or "
                   "another optimizer (not gd or lbfgs), as torch's param groups; see the README.")
    table = Table(title=kind, title_justify="left", caption=caption, caption_justify="left")
    table.add_column("name", style="bold cyan")
    table.add_column("options: default (allowed)")
    table.add_column("what it is")
    for name, params, doc in rows:
        table.add_row(escape(name), escape("\n".join(f"{p}={v}" for p, v in params.items())), escape(doc))
    return table



def lr_find_table(report, rules: tuple[str, ...]) -> Table:
    """`lossbench lr-find`: per optimizer, the suggested rates, the lowest smoothed loss and
    the rate it was at, and how many steps ran before the stop rule (or the end)."""
    t = Table(title=f"{report.name}: learning-rate range test, lr {report.start:g} to {report.end:g} in "
                    f"{report.steps} steps; smoothed training loss", title_justify="left")
    for c in ("optimizer", *(f"{r} lr" for r in rules), "min loss", "at lr", "steps run"):
        t.add_column(c, justify="left" if c == "optimizer" else "right")
    for x in report.tested:
        r = x.result
        if r is None:
            t.add_row(escape(x.label), *["—"] * (len(rules) + 2), "skipped")
            continue
        t.add_row(escape(x.label), *(_num(r.suggestions[k][0], 2, ".2g") for k in rules), _num(r.min_loss),
                  _num(r.min_lr, 2, ".2g"), f"{len(r.lrs)}" + (" (diverged)" if r.stopped == "diverged" else ""))
    return t
