"""The progress display of `lossbench run`. Kept apart from report.py so a sweep starts
its workers without importing pandas (report's tables need it; progress does not)."""

from __future__ import annotations

import time

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from lossbench.analysis.labels import clock, run_label


class Progress:
    """Progress for `lossbench run`. On a terminal, a Rich bar: runs done/total, elapsed,
    ETA, and what trains now ('adam, lr=0.001, seed 1 · epoch 3/10 · val_loss 0.41').
    Elsewhere (nohup, CI, a batch scheduler's log), one line per finished run with
    done/total and an ETA. Nothing with --quiet."""

    def __init__(self, console: Console, enabled: bool, lines: bool = False):
        self.enabled, self.lines, self.console = enabled, lines and not enabled, console
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
            spec = info["spec"]
            self.bar.update(self.task, description=f"{run_label(spec.cell, spec.seed)} · starting")
        elif kind == "epoch":
            row, spec = info["row"], info["spec"]
            self.bar.update(self.task, description=f"{run_label(spec.cell, spec.seed)} · epoch {row['epoch']}/"
                                                   f"{spec.config['train'].get('epochs', 10)} · "
                                                   f"val_loss {row['val_loss']:.4g}")
        elif kind == "run_end":
            self.bar.advance(self.task)

    def _line(self, kind: str, **info) -> None:
        if kind == "start":
            self.t0, self.first_done = time.monotonic(), info["done"]
        elif kind == "run_end":
            rec, done, total = info["record"], info["done"], info["total"]
            trained = done - self.first_done
            elapsed = time.monotonic() - self.t0
            eta = f"ETA {clock(elapsed / trained * (total - done))}" if done < total else "done"
            took = rec["wall_time_s"]
            self.console.print(f"[{done}/{total}] {escape(run_label(rec['cell'], rec['seed']))}: {rec['status']} in "
                               f"{took:.{2 if took < 10 else 0}f} s · elapsed {clock(elapsed)} · {eta}",
                               highlight=False)
