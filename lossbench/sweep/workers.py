"""A pool of worker processes that train stacks of RunSpecs and send back their records.

On Linux a worker is a fork of this process, made after validation has imported NumPy and
the engine: it starts in milliseconds instead of the ~0.25 s a fresh interpreter spends
importing. (It loads its datasets itself, as a spawned worker does.) The fork sheds what
it must not share (`_forked_child`): stdin and every inherited file descriptor but its two
pipes (so the results directory's lock dies with the parent), the signal handlers, and
stdout/stderr objects whose locks another thread may have held. It never
returns into the parent's code: it leaves through os._exit. Elsewhere (macOS, where fork
is unsafe with system libraries) a worker is a fresh Python process running `main`, its
BLAS threads pinned through the environment before NumPy loads; a spawned interpreter
needs no `if __name__ == "__main__"` guard in the user's script. Either way
workers x threads <= cores.

Tasks and results travel as pickles over two pipes, one stack (often a single run) at a
time per worker, so a worker that dies (killed, out of memory) takes only its own runs
with it: the parent sees the pipe close, records them `failed` and starts a replacement.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import traceback
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


# How workers start: "fork" where it is safe (Linux), else "spawn" (tests set both).
START = "fork" if sys.platform.startswith("linux") else "spawn"


class _Worker:
    def __init__(self, threads: int):
        task_r, task_w = os.pipe()
        res_r, res_w = os.pipe()
        # Ctrl-C is blocked in this thread while the child is made: the child inherits the
        # blocked mask across fork (and exec), so a ^C landing while it starts stays
        # pending until it has set ^C to be ignored (no traceback, no fatal-error dump);
        # here the ^C is delivered on unblocking, so the parent still gets it.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            self.proc = _fork(task_r, res_w, threads) if START == "fork" else _spawn(task_r, res_w, threads)
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
            emit("run_start", spec=spec, pid=w.proc.pid, stack=w.stack)

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
    # a spawned BLAS read the thread count from the environment; a forked one still has
    # the parent's, and a BLAS may ignore the environment
    threadpool_limits(int(os.environ.get("OMP_NUM_THREADS", "1")))
    tasks, results = Connection(task_fd, writable=False), Connection(result_fd, readable=False)
    datasets: dict = {}  # each distinct dataset is loaded once per worker
    while True:
        try:
            stack = tasks.recv()
        except EOFError:  # the parent is gone or done
            return
        records = run_stack(stack, datasets, on_epoch=lambda i, row: results.send(("epoch", (i, row))))
        results.send(("done", records))



def _spawn(task_r: int, res_w: int, threads: int) -> subprocess.Popen:
    env = {**os.environ, **{v: str(threads) for v in THREAD_VARS}}
    return subprocess.Popen([sys.executable, "-c", _BOOT, _PACKAGE_ROOT, str(task_r), str(res_w)],
                            pass_fds=(task_r, res_w), env=env, stdin=subprocess.DEVNULL)


def _fork(task_r: int, res_w: int, threads: int) -> _Forked:
    pid = os.fork()
    if pid:
        return _Forked(pid)
    code = 1
    try:
        _forked_child(task_r, res_w, threads)
        main(task_r, res_w)
        code = 0
    except BaseException:
        traceback.print_exc()  # a bug in the worker: say what, as a spawned one would
    finally:
        os._exit(code)  # never run the parent's finally blocks, atexit handlers or lock releases


def _forked_child(task_r: int, res_w: int, threads: int) -> None:
    """Make a fork of the parent a worker (see the module's docstring)."""
    gc.freeze()  # the parent's objects are never collected here: none closes a descriptor number reused below
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # SIGINT is still blocked (see _Worker)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    if 0 not in (task_r, res_w):  # (a parent started with stdin closed may have got fd 0 for a pipe)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)  # as a spawned worker's stdin: a terminal's input is the parent's
        os.close(devnull)
    keep = sorted({0, 1, 2, task_r, res_w})
    for low, high in zip(keep, [*keep[1:], os.sysconf("SC_OPEN_MAX")]):
        os.closerange(low + 1, high)  # the results directory's lock, other workers' pipes, the parent's files
    # fresh stream objects: another thread of the parent (a progress bar) may have held
    # the old ones' locks at the moment of the fork
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115  (fds 1 and 2 outlive this process's objects)
    sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
    os.environ.update({v: str(threads) for v in THREAD_VARS})


class _Forked:
    """What the pool needs of a forked worker, as subprocess.Popen offers for a spawned one."""

    def __init__(self, pid: int):
        self.pid, self.returncode = pid, None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            os.kill(self.pid, signal.SIGKILL)
