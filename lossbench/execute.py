"""Run an experiment's RunSpecs and record each finished run durably.

Each finished run becomes one JSON record in `<out>/records/`, written atomically
(temporary file, fsync, rename), so a crash never leaves half a record; the CSV tables
are rebuilt from the records after every run. Runs whose record exists are skipped.
A run that raises is recorded `failed` with its error; the sweep goes on.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from . import __version__
from .config import Experiment, RunSpec
from .results import RECORDS, write_tables

Event = Callable[..., None]


def atomic_write(path: Path, text: str) -> None:
    """Readers see the old file or the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _clean(v):
    """JSON has no NaN: store it as null."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_clean(x) for x in v]
    return v


def manifest(started: str, ended: str | None, exp: Experiment) -> dict:
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
        "started": started,
        "ended": ended,
    }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_one(spec: RunSpec, datasets: dict, on_epoch=None) -> dict:
    """Train one RunSpec; never raises: a failure is a record with status 'failed'."""
    from . import data
    from .train import train

    record = {"run_id": spec.run_id, "seed": spec.seed, "cell": spec.cell, "config": spec.config}
    start = time.perf_counter()
    try:
        cfg = spec.config
        res = train(data.load_spec(cfg["dataset"], datasets), model=cfg["model"], loss=cfg["loss"], optimizer=cfg["optimizer"],
                    train=cfg["train"], seed=spec.seed, on_epoch=on_epoch)
        record.update(status=res.status, epochs=res.epochs, summary=res.summary, history=res.history,
                      wall_time_s=res.wall_time_s, n_params=res.n_params, error="")
    except Exception as e:  # isolate the failure to this run
        last = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
        where = f" ({Path(last.filename).name}:{last.lineno})" if last else ""
        record.update(status="failed", epochs=0, summary={}, history=[], wall_time_s=time.perf_counter() - start,
                      n_params=0, error=f"{type(e).__name__}: {e}{where}")
    return _clean(record)


def run_experiment(exp: Experiment, out: Path, on_event: Event | None = None) -> None:
    """Train every run of `exp` not yet recorded in `out`; write the tables as it goes."""
    emit = on_event or (lambda *a, **k: None)
    out.mkdir(parents=True, exist_ok=True)
    records = out / RECORDS
    records.mkdir(exist_ok=True)
    import yaml

    atomic_write(out / "config.yaml", yaml.safe_dump(exp.config, sort_keys=False))
    started = _now()
    atomic_write(out / "manifest.json", json.dumps(manifest(started, None, exp), indent=2))
    datasets = exp.datasets  # what validation already loaded is not loaded again
    total = len(exp.runs)
    emit("start", total=total, done=sum((records / f"{s.run_id}.json").exists() for s in exp.runs))
    for i, spec in enumerate(exp.runs):
        path = records / f"{spec.run_id}.json"
        if path.exists():
            emit("skip", index=i, spec=spec)
            continue
        emit("run_start", index=i, total=total, spec=spec)
        record = run_one(spec, datasets, on_epoch=lambda row: emit("epoch", spec=spec, row=row))
        atomic_write(path, json.dumps(record))
        write_tables(out, exp)
        emit("run_end", index=i, total=total, spec=spec, record=record)
    write_tables(out, exp)
    atomic_write(out / "manifest.json", json.dumps(manifest(started, _now(), exp), indent=2))
    emit("end", total=total)
