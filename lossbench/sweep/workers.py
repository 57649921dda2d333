"""A pool of worker processes that train stacks of RunSpecs and send back their records.

Each worker is a fresh Python process running `main` below (not a fork: the parent may
hold threads and BLAS state, and a spawned interpreter needs no `if __name__ ==
"__main__"` guard in the user's script). Its BLAS threads are pinned through the
environment before NumPy loads, so workers x threads <= cores. Tasks and results travel as
pickles over two pipes, one stack (often a single run) at a time per worker, so a worker
that dies (killed, out of memory) takes only its own runs with it: the parent sees the
pipe close, records them `failed` and starts a replacement.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection, wait
from pathlib import Path

from threadpoolctl import threadpool_limits

from lossbench.sweep.job import failed_record, run_stack
from lossbench.sweep.spec import RunSpec

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def cpu_count() -> int:
    """Cores this process may run on (the affinity mask, not the whole machine)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def threads_per_worker(workers: int) -> int:
    return max(1, cpu_count() // max(1, workers))


# The worker's first lines: ignore Ctrl-C before anything else (the parent decides what
# happens; a ^C during start-up must not print tracebacks), and import lossbench from
# where this process found it, never from the current directory, where a stray copy.py
# would shadow the standard library.
_BOOT = """import signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
sys.path[0] = sys.argv[1]
from lossbench.sweep.workers import main
main(int(sys.argv[2]), int(sys.argv[3]))
"""
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


class _Worker:
    def __init__(self, threads: int):
        task_r, task_w = os.pipe()
        res_r, res_w = os.pipe()
        env = {**os.environ, **{v: str(threads) for v in THREAD_VARS}}
        # Ctrl-C is blocked in this thread while the child is made: the child inherits the
        # blocked mask across fork and exec, so a ^C landing while its interpreter starts
        # stays pending until the boot code has set it to be ignored (no fatal-error dump);
        # here the ^C is delivered on unblocking, so the parent still gets it.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            self.proc = subprocess.Popen([sys.executable, "-c", _BOOT, _PACKAGE_ROOT, str(task_r), str(res_w)],
                                         pass_fds=(task_r, res_w), env=env, stdin=subprocess.DEVNULL)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        os.close(task_r)
        os.close(res_w)
        self.tasks = Connection(task_w, readable=False)
        self.results = Connection(res_r, writable=False)
        self.stack: list[RunSpec] | None = None

    def give(self, stack: list[RunSpec]) -> None:
        self.stack = stack
        self.tasks.send(stack)

    def death(self) -> str:
        """Why the process is gone, for the run it took with it."""
        code = self.proc.wait()
        if code < 0:
            try:
                return f"worker process killed by {signal.Signals(-code).name} while training this run"
            except ValueError:
                pass
        return f"worker process exited with code {code} while training this run"

    def stop(self) -> None:
        for c in (self.tasks, self.results):
            c.close()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def run_pool(stacks: list[list[RunSpec]], workers: int, emit: Callable[..., None]) -> Iterator[dict]:
    """Yield one record per run, in completion order. Closing the generator (or an
    interrupt) kills the workers; runs in flight are simply not recorded."""
    pending = list(reversed(stacks))
    threads = threads_per_worker(workers)
    pool = [_Worker(threads) for _ in range(min(workers, len(stacks)))]

    def give(w: _Worker) -> None:
        w.give(pending.pop())
        for spec in w.stack:
            emit("run_start", spec=spec, pid=w.proc.pid)

    try:
        for w in pool:
            give(w)
        while any(w.stack is not None for w in pool):
            ready = wait([w.results for w in pool if w.stack is not None])
            for w in [w for w in pool if w.results in ready]:
                try:
                    kind, payload = w.results.recv()
                except (EOFError, OSError):  # the worker died: fail its runs, carry on without it
                    why = w.death()
                    records = [failed_record(spec, why, 0.0, len(w.stack)) for spec in w.stack]
                    w.stop()
                    pool.remove(w)
                    if pending:  # a fresh process for what is left
                        pool.append(_Worker(threads))
                        give(pool[-1])
                    yield from records
                    continue
                if kind == "epoch":
                    i, row = payload
                    emit("epoch", spec=w.stack[i], row=row)
                    continue
                w.stack = None
                yield from payload
                if pending:
                    give(w)
    finally:
        for w in pool:
            w.stop()


def main(task_fd: int, result_fd: int) -> None:
    """The worker process: train what arrives, send back epochs and the record, until EOF."""
    try:
        _serve(task_fd, result_fd)
    except (BrokenPipeError, ConnectionResetError):  # the parent died mid-run: nobody to tell
        pass


def _serve(task_fd: int, result_fd: int) -> None:
    threadpool_limits(int(os.environ.get("OMP_NUM_THREADS", "1")))  # in case a BLAS ignored the env
    tasks, results = Connection(task_fd, writable=False), Connection(result_fd, readable=False)
    datasets: dict = {}  # each distinct dataset is loaded once per worker
    while True:
        try:
            stack = tasks.recv()
        except EOFError:  # the parent is gone or done
            return
        records = run_stack(stack, datasets, on_epoch=lambda i, row: results.send(("epoch", (i, row))))
        results.send(("done", records))

