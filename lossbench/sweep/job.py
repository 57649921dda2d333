"""One run as a unit of work: RunSpec -> record (a JSON-ready dict).

Kept apart from `execute` so worker processes and Dask tasks import only what training
needs (NumPy, not pandas): a worker starts in a third of the time.
"""

from __future__ import annotations

import math
import time
import traceback
from pathlib import Path

from lossbench import data
from lossbench.engine.train import train
from lossbench.sweep.spec import RunSpec


def failed_record(spec: RunSpec, error: str, wall_time_s: float) -> dict:
    return {"run_id": spec.run_id, "seed": spec.seed, "cell": spec.cell, "config": spec.config, "status": "failed",
            "epochs": 0, "summary": {}, "history": [], "wall_time_s": wall_time_s, "n_params": 0,
            "error": " ".join(error.split())}  # one line in runs.csv and in the terminal


def run_one(spec: RunSpec, datasets: dict, on_epoch=None) -> dict:
    """Train one RunSpec; never raises: a failure is a record with status 'failed'."""
    start = time.perf_counter()
    try:
        cfg = spec.config
        res = train(data.load_spec(cfg["dataset"], datasets), model=cfg["model"], loss=cfg["loss"],
                    optimizer=cfg["optimizer"],
                    train=cfg["train"], seed=spec.seed, on_epoch=on_epoch)
    except Exception as e:  # isolate the failure to this run
        last = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
        where = f" ({Path(last.filename).name}:{last.lineno})" if last else ""
        return _clean(failed_record(spec, f"{type(e).__name__}: {e}{where}", time.perf_counter() - start))
    return _clean({"run_id": spec.run_id, "seed": spec.seed, "cell": spec.cell, "config": spec.config,
                   "status": res.status, "epochs": res.epochs, "summary": res.summary, "history": res.history,
                   "wall_time_s": res.wall_time_s, "n_params": res.n_params, "error": ""})


def _clean(v):
    """JSON has no NaN: store it as null."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_clean(x) for x in v]
    return v


