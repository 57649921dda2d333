"""Sending runs to a Dask distributed cluster (the optional extra `lossbench[dask]`).

Each stack of runs (often one run) is one task calling the same `run_stack` as local
workers, so the numbers are the same; only the records come back, and the client writes
them exactly as local runs. Workers
load datasets themselves (their own cache, or a path they all see) and keep them for the
next task.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from lossbench.errors import ClusterLost, LossbenchError, install_hint
from lossbench.sweep.job import failed_record, run_stack
from lossbench.sweep.spec import RunSpec

_DATASETS: dict = {}  # per worker process: each dataset is loaded once


def _task(stack: list[RunSpec]) -> list[dict]:
    # BLAS threads are the worker's business: Dask's nanny starts workers with
    # OMP_NUM_THREADS=1 and friends, which suits these small models (raising it per task
    # oversubscribes the cores: measured 7x slower with 2 worker processes on 2 cores).
    return run_stack(stack, _DATASETS)


ADDRESS = re.compile(r"^(tcp|tls)://[^\s:/]+:\d{1,5}$")


def connect(address: str | None):
    """A Dask client for `address`, before anything is written: a missing extra, a malformed
    address or an unreachable scheduler is a one-line LossbenchError."""
    try:  # the optional extra, imported only when asked for (it takes a second to import)
        from distributed import Client
    except ImportError:
        raise LossbenchError(f"--executor dask needs the optional extra: {install_hint('dask')}") from None
    if not address:
        raise LossbenchError("--executor dask needs --address tcp://HOST:PORT (the scheduler's address)")
    if not ADDRESS.match(address):
        raise LossbenchError(f"--address: expected tcp://HOST:PORT (or tls://), got {address!r}")
    try:
        # how long to try: Dask's own setting, distributed.comm.timeouts.connect (30s by default)
        return Client(address, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as e:
        raise LossbenchError(f"cannot reach the Dask scheduler at {address}: {e}") from None


def run_dask(stacks: list[list[RunSpec]], client) -> Iterator[dict]:
    """One record per run as tasks (stacks) finish. A task whose workers keep dying
    (KilledWorker) becomes `failed` records for its runs only. Losing the scheduler is not
    the runs' fault: it stops the sweep like an interrupt (ClusterLost), recording nothing more."""
    from distributed import as_completed  # the optional extra; connect() checked it is there

    futures = {}
    try:
        for stack in stacks:
            futures[client.submit(_task, stack, key=f"lossbench-{stack[0].run_id}", pure=False)] = stack
        for fut in as_completed(futures, loop=client.loop):  # not the default client: we set none
            stack = futures.pop(fut)
            if fut.status == "cancelled" or client.status not in ("running", "connecting"):
                raise ClusterLost(f"lost the Dask scheduler ({client.status}); finished runs are kept: "
                                  "run the same command again to resume")
            try:
                records = fut.result()
            except Exception as e:  # KilledWorker, an import error on the worker, ...
                records = [failed_record(spec, f"dask: {type(e).__name__}: {e}", 0.0, len(stack)) for spec in stack]
            yield from records
    finally:  # the caller owns the client and closes it
        if futures and client.status == "running":
            client.cancel(list(futures))
