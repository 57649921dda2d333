"""Run an experiment's RunSpecs and stream each finished run into the results store.

Only this process writes the results directory, under its lock (see store.py), whatever
executes the runs: in process, a local worker pool, or a Dask cluster. Runs already
recorded are skipped. A run that raises is recorded `failed` with its error; the sweep
goes on. Progress goes to an `on_event(kind, **info)` callback; nothing here prints.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lossbench import data
from lossbench.registry import Choice, Int
from lossbench.sweep import prune
from lossbench.sweep.cluster import connect, run_dask
from lossbench.sweep.config import Experiment
from lossbench.sweep.job import run_stack
from lossbench.sweep.spec import RunSpec
from lossbench.sweep.stacking import STACK, plan_stacks
from lossbench.sweep.workers import cpu_count, run_pool

if TYPE_CHECKING:
    from lossbench.sweep.store import Store

Event = Callable[..., None]
EXECUTORS = Choice("local", "dask")


@dataclass
class Outcome:
    total: int  # runs in the experiment
    skipped: int  # already recorded before this call
    trained: int = 0  # recorded by this call
    failed: int = 0  # of those, status failed
    pruned: int = 0  # of those, stopped at a rung (prune)
    interrupted: bool = False


def run_experiment(exp: Experiment, out: Path, on_event: Event | None = None, *, workers: int | None = None,
                   executor: str = "local", address: str | None = None, fresh: bool = False,
                   retry_failed: bool = False, stack: str | int = "auto") -> Outcome:
    """Train every run of `exp` not yet recorded in `out` and keep the tables current.

    `workers` local processes (default: one per core; 1 trains in this process), or the
    Dask cluster at `address` with executor="dask". `stack`: which runs train together as
    one model (sweep.stacking: "auto", "off" or at most N per stack). Raises ResultsDirError before any
    training if `out` is locked by a live run or holds a different experiment. On
    KeyboardInterrupt every finished run stays recorded, the tables are written, and the
    interrupt propagates.
    """
    from lossbench.sweep.store import open_store  # pandas: not for `run`'s check of --executor

    _check_options(executor, workers, stack)
    emit = on_event or _ignore
    prepare_data(exp, emit)  # every dataset available, or one DataError before anything is written
    # connected before anything is written: a cluster we cannot use leaves the directory alone
    client = connect(address) if executor == "dask" else None
    # this function made the client, so it alone closes it, whatever happens below
    with _closing(client), open_store(out, exp, fresh=fresh, retry_failed=retry_failed) as store:
        for path, renamed, what in store.set_aside:
            emit("set_aside", path=path, renamed=renamed, what=what)
        todo = store.todo()
        outcome = Outcome(total=len(exp.runs), skipped=len(exp.runs) - len(todo))
        n_workers = max(1, min(workers or cpu_count(), len(todo)))
        slots = n_workers if client is None else max(1, sum(client.nthreads().values()))

        def train(specs: list[RunSpec]) -> Iterator[dict]:
            stacks = plan_stacks(specs, stack, slots, exp.datasets)
            return _stream(stacks, exp, emit, client, min(n_workers, len(stacks)) or 1)

        stacks = plan_stacks(todo, stack, slots, exp.datasets) if exp.prune is None else None
        if stacks is not None:  # the stacks decide how many workers are worth starting
            n_workers = min(n_workers, len(stacks)) or 1
        store.begin()
        emit("start", total=outcome.total, done=outcome.skipped, todo=len(todo),
             workers=n_workers if client is None else None, executor=executor)
        try:
            if stacks is not None:
                _record(_stream(stacks, exp, emit, client, n_workers), store, outcome, emit)
            else:
                _halving(exp, store, outcome, emit, train)
        except KeyboardInterrupt:
            outcome.interrupted = True
            raise
        finally:
            store.finish(interrupted=outcome.interrupted)
    emit("end", total=outcome.total)
    return outcome


def _halving(exp: Experiment, store: Store, outcome: Outcome, emit: Event, train) -> None:
    """Successive halving (sweep.prune): rung after rung, train what the rung needs, then
    record the runs its decision stops. Each step starts from the records alone, so a
    resumed sweep re-enters the rung it was killed in."""
    brackets = prune.brackets(exp.runs, exp.searched, exp.prune)
    while True:
        phase = prune.next_phase(brackets, {**store.paused, **store.records}, exp.prune, set(store.records))
        for epoch, kept, stopped in phase.decisions:
            emit("rung", epoch=epoch, kept=kept, pruned=stopped, metric=exp.prune.metric)
        for record in phase.pruned:
            store.add(record)
            outcome.trained += 1
            outcome.pruned += 1
            emit("run_end", record=record, done=outcome.skipped + outcome.trained, total=outcome.total)
        if not phase.todo:
            if not phase.pruned:
                return
            continue
        emit("phase", runs=len(phase.todo), epochs=sorted({s.budget for s in phase.todo if s.budget is not None}))
        _record(train(phase.todo), store, outcome, emit)


def prepare_data(exp: Experiment, emit: Event) -> None:
    """Make each distinct dataset of `exp` available once (found, or downloaded, verified
    and decoded into the cache), so no run fails for data it cannot have."""
    done = set()
    for spec in exp.dataset_specs():
        files = (spec["name"], str(spec.get("path")), str(spec.get("mirrors")))  # limit, split: same files
        if files in done:
            continue
        done.add(files)
        where = data.prepare(spec, emit)
        if where is not None:
            emit("dataset", name=spec["name"], where=where)


def _check_options(executor: str, workers: int | None, stack) -> None:
    EXECUTORS.check("executor", executor)
    STACK.check("stack", stack)
    if workers is not None:
        Int(ge=1).check("workers", workers)


def _ignore(*args, **info) -> None:
    pass


def _closing(client):
    return contextlib.closing(client) if client is not None else contextlib.nullcontext()


def _stream(stacks: list[list[RunSpec]], exp: Experiment, emit: Event, client, n_workers: int) -> Iterator[dict]:
    """The records of the runs in `stacks` as they finish, from the executor asked for.
    Nothing starts before the first record is asked for."""
    if client is not None:
        return run_dask(stacks, client)
    if n_workers > 1:
        return run_pool(stacks, n_workers, emit)
    return _serial(stacks, exp.datasets, emit)  # what validation loaded is not loaded again


def _serial(stacks: list[list[RunSpec]], datasets: dict, emit: Event) -> Iterator[dict]:
    for stack in stacks:
        for spec in stack:
            emit("run_start", spec=spec, stack=stack)
        yield from run_stack(stack, datasets, on_epoch=lambda i, row, stack=stack: emit("epoch", spec=stack[i],
                                                                                         row=row))


def _record(stream: Iterator[dict], store: Store, outcome: Outcome, emit: Event) -> None:
    """Write each record as it arrives (a paused one, prune's, beside the finished ones);
    whatever stops the stream, stop the executor before the caller writes the last tables."""
    try:
        for record in stream:
            if record.get("paused"):
                store.pause(record)
                emit("run_paused", record=record)
                continue
            store.add(record)
            outcome.trained += 1
            outcome.failed += record["status"] == "failed"
            emit("run_end", record=record, done=outcome.skipped + outcome.trained, total=outcome.total)
    finally:
        stream.close()  # stop workers / cancel cluster tasks before writing the last tables
