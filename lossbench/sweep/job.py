"""Runs as units of work: RunSpec -> record (a JSON-ready dict); a stack of RunSpecs ->
their records, trained as one model.

Kept apart from `execute` so worker processes and Dask tasks import only what training
needs (NumPy, not pandas): a worker starts in a third of the time.
"""

from __future__ import annotations

import math
import time
import traceback
from pathlib import Path

from lossbench import data
from lossbench.engine.train import train, train_stack
from lossbench.sweep.spec import RunSpec


def failed_record(spec: RunSpec, error: str, wall_time_s: float, stack_size: int = 1) -> dict:
    record = {"run_id": spec.run_id, "seed": spec.seed, "cell": spec.cell, "config": spec.config, "status": "failed",
              "epochs": 0, "summary": {}, "history": [], "wall_time_s": wall_time_s, "n_params": 0,
              "error": " ".join(error.split())}  # one line in runs.csv and in the terminal
    if stack_size > 1:  # it failed with its stack (a killed worker)
        record["stack_size"] = stack_size
    return record


def run_one(spec: RunSpec, datasets: dict, on_epoch=None) -> dict:
    """Train one RunSpec; never raises: a failure is a record with status 'failed'."""
    start = time.perf_counter()
    try:
        cfg = spec.config
        res = train(data.load_spec(cfg["dataset"], datasets), model=cfg["model"], loss=cfg["loss"],
                    optimizer=cfg["optimizer"],
                    train=cfg["train"], seed=spec.seed, on_epoch=on_epoch, stop_after=spec.budget)
    except Exception as e:  # isolate the failure to this run
        last = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
        where = f" ({Path(last.filename).name}:{last.lineno})" if last else ""
        return _clean(failed_record(spec, f"{type(e).__name__}: {e}{where}", time.perf_counter() - start))
    return _record(spec, res)


def _record(spec: RunSpec, res, stack_size: int = 1) -> dict:
    record = {"run_id": spec.run_id, "seed": spec.seed, "cell": spec.cell, "config": spec.config,
              "status": res.status, "epochs": res.epochs, "summary": res.summary, "history": res.history,
              "wall_time_s": res.wall_time_s, "n_params": res.n_params, "error": ""}
    if stack_size > 1:  # its times are its share of the stack's
        record["stack_size"] = stack_size
    record = _clean(record)
    if res.paused:  # stopped at its rung (prune): not finished, and its parameters are not the final ones
        record["paused"] = True
        return record
    if res.params:  # train.save_params: arrays, written by the store beside the record, not in it
        record["params"] = res.params
    return record


def run_stack(specs: list[RunSpec], datasets: dict, on_epoch=None) -> list[dict]:
    """Train RunSpecs that share a dataset, model and batches as one stacked model; never
    raises. `on_epoch(i, row)` reports run i's epochs. Should the stack fail as a whole
    (one run's settings refused, say), each run trains alone, so only that run fails."""
    if len(specs) == 1:
        return [run_one(specs[0], datasets, on_epoch and (lambda row: on_epoch(0, row)))]
    try:
        d = data.load_spec(specs[0].config["dataset"], datasets)
        runs = [{**{k: s.config[k] for k in ("model", "loss", "optimizer", "train")}, "seed": s.seed,
                 "stop_after": s.budget, "on_epoch": on_epoch and (lambda row, i=i: on_epoch(i, row))}
                for i, s in enumerate(specs)]
        results = train_stack(d, runs)
    except Exception:  # noqa: BLE001  (each run alone says what was wrong with it)
        return [run_one(s, datasets, on_epoch and (lambda row, i=i: on_epoch(i, row))) for i, s in enumerate(specs)]
    return [_record(s, r, len(specs)) for s, r in zip(specs, results)]


def _clean(v):
    """JSON has no NaN: store it as null."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_clean(x) for x in v]
    return v


