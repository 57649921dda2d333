"""Run an experiment's RunSpecs and record each finished run durably.

Only this process writes the results directory, under its lock, whatever executes the
runs (in process, a local worker pool, or a Dask cluster). Each finished run becomes one
JSON record in `<out>/records/`, written atomically (temporary file, fsync, rename), so a
kill at any moment never leaves half a record; the CSV tables are rebuilt from the
records, also atomically. Runs whose record exists are skipped. A run that raises is
recorded `failed` with its error; the sweep goes on.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from dataclasses import dataclass
from typing import Callable, Iterator

import yaml

from lossbench import __version__
from lossbench.sweep.config import Experiment
from lossbench.sweep.spec import RunSpec
from lossbench.errors import LossbenchError
from lossbench.sweep.job import run_one
from lossbench.sweep.store import RECORDS, load_records, write_tables
from lossbench.sweep.workers import cpu_count, run_pool

Event = Callable[..., None]


_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read the process umask (the only way is to set it) and put it back


def atomic_write(path: Path, text: str) -> None:
    """Readers see the old file or the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are shared like any file
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def manifest(started: str, ended: str | None, exp: Experiment, interrupted: bool = False) -> dict:
    import numpy as np

    try:
        from threadpoolctl import threadpool_info

        blas = [{k: i.get(k) for k in ("internal_api", "version", "num_threads")} for i in threadpool_info()]
    except Exception:  # threadpoolctl cannot always introspect; the manifest is informational
        blas = []
    return {
        "lossbench": __version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "blas": blas,
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count()},
        "config": exp.source,
        "swept": exp.swept,
        "target": exp.target,
        "task": exp.task,
        "runs": len(exp.runs),
        "run_ids": [s.run_id for s in exp.runs],  # what the directory is for; see resdir.check_compatible
        "started": started,
        "ended": ended,
        "interrupted": interrupted,
    }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Outcome:
    total: int  # runs in the experiment
    skipped: int  # already recorded before this call
    trained: int = 0  # recorded by this call
    failed: int = 0  # of those, status failed
    interrupted: bool = False


def _serial(specs: list[RunSpec], datasets: dict, emit: Event) -> Iterator[dict]:
    for spec in specs:
        emit("run_start", spec=spec)
        yield run_one(spec, datasets, on_epoch=lambda row, spec=spec: emit("epoch", spec=spec, row=row))


def run_experiment(exp: Experiment, out: Path, on_event: Event | None = None, *, workers: int | None = None,
                   executor: str = "local", address: str | None = None, fresh: bool = False,
                   retry_failed: bool = False) -> Outcome:
    """Train every run of `exp` not yet recorded in `out` and keep the tables current.

    `workers` local processes (default: one per core; 1 trains in this process), or the
    Dask cluster at `address` with executor="dask". Raises ResultsDirError before any
    training if `out` is locked by a live run or holds a different experiment. On
    KeyboardInterrupt every finished run stays recorded, the tables are written, and the
    interrupt propagates.
    """
    from lossbench.sweep.resdir import Lock, ResultsDirError, check_compatible, check_owned, clear, sweep_temporaries

    if executor not in ("local", "dask"):
        raise LossbenchError(f"executor: unknown executor {executor!r}; choose local or dask")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise LossbenchError(f"workers: must be a whole number >= 1, got {workers!r}")
    emit = on_event or (lambda *a, **k: None)
    client = None
    if executor == "dask":  # before anything is written: a cluster we cannot use leaves the directory alone
        from lossbench.sweep.cluster import connect

        client = connect(address)
    # this function made the client, so it alone closes it, whatever happens below
    with contextlib.closing(client) if client is not None else contextlib.nullcontext():
        try:
            out.mkdir(parents=True, exist_ok=True)
            lock = Lock(out).acquire()
        except OSError as e:
            raise ResultsDirError(f"{out}: cannot be used as a results directory: {e.strerror or e}") from None
        with lock:
            ids = [s.run_id for s in exp.runs]
            check_owned(out)
            if not fresh:
                check_compatible(out, exp.config, ids)
            sweep_temporaries(out)
            if fresh:
                clear(out)
            records = {r["run_id"]: r for r in load_records(out, ids)}
            if retry_failed:
                records = {k: r for k, r in records.items() if r["status"] != "failed"}
            todo = [s for s in exp.runs if s.run_id not in records]
            outcome = Outcome(total=len(exp.runs), skipped=len(exp.runs) - len(todo))
            n_workers = max(1, min(workers or cpu_count(), len(todo)))
            if client is not None:
                from lossbench.sweep.cluster import run_dask

                stream = run_dask(todo, client)
            elif n_workers > 1:
                stream = run_pool(todo, n_workers, emit)
            else:
                stream = _serial(todo, exp.datasets, emit)  # what validation loaded is not loaded again
            records_dir = out / RECORDS
            records_dir.mkdir(exist_ok=True)
            atomic_write(out / "config.yaml", yaml.safe_dump(exp.config, sort_keys=False))
            started = _now()
            atomic_write(out / "manifest.json", json.dumps(manifest(started, None, exp), indent=2))
            emit("start", total=outcome.total, done=outcome.skipped, todo=len(todo),
                 workers=n_workers if executor == "local" else None, executor=executor)
            tables = _Tables(out, exp, records)
            try:
                for record in stream:
                    atomic_write(records_dir / f"{record['run_id']}.json", json.dumps(record))
                    outcome.trained += 1
                    outcome.failed += record["status"] == "failed"
                    tables.add(record)
                    emit("run_end", record=record, done=outcome.skipped + outcome.trained, total=outcome.total)
            except KeyboardInterrupt:
                outcome.interrupted = True
                raise
            finally:
                stream.close()  # stop workers / cancel cluster tasks before writing the last tables
                tables.write()
                atomic_write(out / "manifest.json",
                             json.dumps(manifest(started, _now(), exp, interrupted=outcome.interrupted), indent=2))
    emit("end", total=outcome.total)
    return outcome


class _Tables:
    """runs.csv / history.csv from the records held in memory, in the experiment's run order
    (so tables do not depend on which worker finished first). Rewriting them costs a few
    ms per hundred runs, so during a sweep they are refreshed at most every `every` seconds;
    the records are the truth and the last write happens in all cases but SIGKILL, after
    which the next run rebuilds them."""

    def __init__(self, out: Path, exp: Experiment, records: dict, every: float = 1.0):
        self.out, self.exp, self.records, self.every = out, exp, records, every
        self.last = -math.inf

    def add(self, record: dict) -> None:
        self.records[record["run_id"]] = record
        if time.monotonic() - self.last >= self.every:
            self.write()

    def write(self) -> None:
        ordered = [self.records[s.run_id] for s in self.exp.runs if s.run_id in self.records]
        write_tables(self.out, self.exp, ordered)
        self.last = time.monotonic()
