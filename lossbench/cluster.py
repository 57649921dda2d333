"""Sending runs to a Dask distributed cluster (the optional extra `lossbench[dask]`).

Each run is one task calling the same `run_one` as local workers, so the numbers are the
same; only the record comes back, and the client writes it exactly as a local run. Workers
load datasets themselves (their own cache, or a path they all see) and keep them for the
next task.
"""

from __future__ import annotations

from typing import Callable, Iterator

from .config import RunSpec
from .errors import LossbenchError

_DATASETS: dict = {}  # per worker process: each dataset is loaded once


def _task(spec: RunSpec) -> dict:
    from distributed import get_worker
    from threadpoolctl import threadpool_limits

    from .job import run_one
    from .workers import threads_per_worker

    # A worker running N tasks at once gets cores/N BLAS threads per task.
    with threadpool_limits(threads_per_worker(get_worker().state.nthreads)):
        return run_one(spec, _DATASETS)


def run_dask(specs: list[RunSpec], address: str | None, emit: Callable[..., None]) -> Iterator[dict]:
    """Connect now (so a missing extra or an unreachable scheduler fails before anything is
    written) and return the stream of records, one per spec as tasks finish."""
    try:
        from distributed import Client
    except ImportError:
        raise LossbenchError("--executor dask needs the optional extra: pip install 'lossbench[dask]'") from None
    if not address:
        raise LossbenchError("--executor dask needs --address tcp://HOST:PORT (the scheduler's address)")
    try:
        # how long to try: Dask's own setting, distributed.comm.timeouts.connect (30s by default)
        client = Client(address, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as e:
        raise LossbenchError(f"cannot reach the Dask scheduler at {address}: {e}") from None
    return _stream(client, specs)


def _stream(client, specs: list[RunSpec]) -> Iterator[dict]:
    """A task whose workers keep dying (KilledWorker) or that cannot run there becomes a
    `failed` record for its run only."""
    from distributed import as_completed

    from .job import failed_record

    futures = {}
    try:
        for spec in specs:
            futures[client.submit(_task, spec, key=f"lossbench-{spec.run_id}", pure=False)] = spec
        for fut in as_completed(futures, loop=client.loop):  # not the default client: we set none
            spec = futures.pop(fut)
            try:
                record = fut.result()
            except Exception as e:  # KilledWorker, an import error on the worker, ...
                record = failed_record(spec, f"dask: {type(e).__name__}: {e}", 0.0)
            yield record
    finally:
        if futures:
            client.cancel(list(futures))
        client.close()
