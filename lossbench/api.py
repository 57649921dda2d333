"""`lossbench.run(...)`: the whole pipeline from Python, returning DataFrames."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd


@dataclass
class Results:
    dir: Path
    runs: pd.DataFrame  # runs.csv
    history: pd.DataFrame  # history.csv
    summary: pd.DataFrame  # one row per grid cell, seeds aggregated, best first


def default_out(name: str) -> Path:
    return Path("results") / name


def run(config: str | Path, out: str | Path | None = None, overrides: list[str] | tuple = (),
        on_event=None, *, workers: int | None = None, executor: str = "local", address: str | None = None,
        fresh: bool = False, retry_failed: bool = False) -> Results:
    """Validate `config`, train every run not yet recorded in `out` (default
    results/<name>/) and return the tables.

    workers: local processes (default one per core; 1 trains in this process).
    executor="dask" with address="tcp://HOST:8786" sends the runs to a Dask cluster.
    fresh: forget what `out` holds first. retry_failed: train runs recorded `failed` again.
    A KeyboardInterrupt propagates after every finished run is recorded.
    """
    from lossbench.sweep.config import load_experiment
    from lossbench.sweep.execute import run_experiment

    exp = load_experiment(config, overrides)
    out_dir = Path(out) if out is not None else default_out(exp.name)
    run_experiment(exp, out_dir, on_event, workers=workers, executor=executor, address=address,
                   fresh=fresh, retry_failed=retry_failed)
    return load(out_dir)


def load(directory: str | Path) -> Results:
    """The tables of a finished (or partly finished) results directory; `summary` ranks
    the grid cells on the config's target metric (or the first validation metric)."""
    from lossbench.analysis.compare import aggregate, default_metric, load_problem
    from lossbench.sweep.store import read_results

    runs, history, _ = read_results(directory)
    if runs.empty:  # interrupted before any run finished: empty tables, not an error
        return Results(Path(directory), runs, history, pd.DataFrame())
    p = load_problem(directory)
    metric = default_metric(p)
    summary = aggregate(p, [k for k in p.swept if k in p.runs.columns], metric, p.target["value"] if p.target else None)
    summary.attrs.update(metric=metric)
    return Results(Path(directory), p.runs, p.history, summary)
