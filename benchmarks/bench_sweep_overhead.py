"""The fixed costs of a sweep: where `lossbench run` spends its time on a tiny grid.

16 runs (4 optimizers x 4 learning rates) of an MLP 2-32-32-2 on spirals, a few epochs
each: the training is a fraction of the command. Two measurements, each in fresh
processes, alternating 1 and N workers so a shared machine's drifting load hits both:

1. the whole command as a user runs it (`python -m lossbench run CFG --out NEW -q`),
   wall time, against a bare `python -c pass` (interpreter start-up);
2. the same command run by a driver that charges the parent process's wall time to
   phases: imports (wherever they happen), validation, data, the results store (open,
   records, tables, manifest), training in process (1 worker), waiting for workers,
   per-epoch messages and progress, the summary. A phase's time excludes the phases and
   imports nested in it. "worker ready" is, per worker, the time from its spawn to its
   first message minus the training that message reports: the worker's start-up.

Reports the median of each figure and its spread (min-max) over the repeats. With
`--against DIR` (another checkout, e.g. `git archive OLD | tar -x -C DIR`), DIR's whole
command alternates with this checkout's, for a before/after on a drifting machine.

    python benchmarks/bench_sweep_overhead.py [--workers 2] [--repeats 5] [--epochs 5] [--against DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GRID = """
name: bench-overhead
dataset: {{name: spirals, n_samples: 600, n_classes: 2}}
model: {{name: mlp, hidden: [32, 32], activation: tanh}}
loss: cross_entropy
optimizer: {{name: adam, lr: 0.003}}
train: {{epochs: {epochs}, batch_size: 16}}
grid:
  optimizer.name: [sgd, momentum, rmsprop, adam]
  optimizer.lr: [0.1, 0.03, 0.01, 0.003]
"""
ROOT = Path(__file__).resolve().parents[1]


# -------------------------------------------------------------------- the driver (child)

class Clock:
    """Exclusive wall time per phase: the innermost open phase is charged."""

    def __init__(self):
        self.stack, self.totals, self.last = ["other"], {}, time.perf_counter()

    def switch(self, push: str | None) -> None:
        now = time.perf_counter()
        top = self.stack[-1]
        self.totals[top] = self.totals.get(top, 0.0) + now - self.last
        self.last = now
        self.stack.append(push) if push else self.stack.pop()


def _timed(clock: Clock, phase: str, f):
    def wrapper(*a, **k):
        clock.switch(phase)
        try:
            return f(*a, **k)
        finally:
            clock.switch(None)
    return wrapper


def _timed_generator(clock: Clock, phase: str, f):
    """A generator's own time (between the values it yields) is charged to `phase`."""
    def wrapper(*a, **k):
        gen = f(*a, **k)
        while True:
            clock.switch(phase)
            try:
                item = next(gen)
            except StopIteration:
                return
            finally:
                clock.switch(None)
            yield item
    return wrapper


def _patch(clock: Clock, obj, name: str, phase: str, generator: bool = False) -> None:
    wrap = _timed_generator if generator else _timed
    setattr(obj, name, wrap(clock, phase, getattr(obj, name)))


def _time_imports(clock: Clock, later: dict) -> None:
    """Charge every outermost import to "imports", wherever it happens; once a module named
    in `later` is imported, apply its patches (modules the command imports lazily are
    patched without importing them early, which would move their cost)."""
    import importlib._bootstrap as bootstrap

    original, depth = bootstrap._find_and_load, [0]

    def find_and_load(*a, **k):
        depth[0] += 1
        if depth[0] == 1:
            clock.switch("imports")
        try:
            return original(*a, **k)
        finally:
            depth[0] -= 1
            if depth[0] == 0:
                clock.switch(None)
                for name in [m for m in later if m in sys.modules]:
                    for obj, attr, phase in later.pop(name)(sys.modules[name]):
                        _patch(clock, obj, attr, phase)
    bootstrap._find_and_load = find_and_load


def driver(cfg: str, out: str, workers: int) -> None:
    """Run `lossbench run` in this process with every phase timed; print JSON."""
    start = time.perf_counter()
    clock = Clock()
    _time_imports(clock, {
        "lossbench.api": lambda m: [(m, "load", "summary")],
        "lossbench.analysis.report": lambda m: [(m.Progress, "on_event", "progress")] if hasattr(m, "Progress") else [],
        "lossbench.analysis.progress": lambda m: [(m.Progress, "on_event", "progress")],
    })
    from lossbench import cli  # the command's own imports are charged to "imports"
    from lossbench.sweep import execute, store
    from lossbench.sweep import workers as pool

    for obj, name, phase in [(cli, "_experiment", "validation"), (execute, "prepare_data", "data"),
                             *[(store, f, "store: open") for f in ("check_owned", "check_compatible",
                                                                     "sweep_temporaries", "load_records")],
                             (store.Store, "begin", "store: begin"), (store.Store, "add", "store: records, tables"),
                             (store.Store, "finish", "store: finish"), (execute, "run_one", "training in process"),
                             (pool, "wait", "waiting for workers"), (pool._Worker, "__init__", "worker spawn"),
                             (cli, "_print_summary", "summary")]:
        _patch(clock, obj, name, phase)
    _patch(clock, execute, "run_pool", "messages", generator=True)
    ready = _watch_workers(pool)
    sys.argv = ["lossbench", "run", cfg, "--out", out, "-q", "--workers", str(workers)]
    try:
        cli.app(prog_name="lossbench")
    except SystemExit as e:
        if e.code:
            raise
    clock.switch(None)
    clock.totals["in the driver"] = time.perf_counter() - start
    clock.totals["worker ready"] = statistics.median(ready) if ready else 0.0
    print(json.dumps(clock.totals))


def _watch_workers(pool) -> list[float]:
    """Per worker: seconds from spawn to its first message, less the training it reports."""
    ready = []
    init = pool._Worker.__init__

    def worker_init(self, *a, **k):
        spawned = time.perf_counter()
        init(self, *a, **k)
        recv = self.results.recv

        def first_recv():
            self.results.recv = recv
            kind, payload = msg = recv()
            trained = payload.get("wall_time_s" if kind == "done" else "elapsed_s") or 0.0
            ready.append(time.perf_counter() - spawned - trained)
            return msg
        self.results.recv = first_recv

    pool._Worker.__init__ = worker_init
    return ready


# -------------------------------------------------------------------- the benchmark (parent)

def _env(root: Path = ROOT) -> dict:
    env = {**os.environ, "PYTHONPATH": str(root)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # measure what users run: compiled modules
    return env


def _wall(cmd: list[str], root: Path = ROOT) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=_env(root), cwd=root)
    return time.perf_counter() - start


def _phases(cfg: Path, out: Path, workers: int) -> dict:
    start = time.perf_counter()
    res = subprocess.run([sys.executable, __file__, "--driver", str(cfg), str(out), str(workers)], check=True,
                         capture_output=True, text=True, env=_env(), cwd=ROOT)
    phases = json.loads(res.stdout.strip().splitlines()[-1])
    phases["process start and exit"] = time.perf_counter() - start - phases.pop("in the driver")
    return phases


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):7.3f} ({min(values):.3f}-{max(values):.3f})"


def _report(title: str, rows: dict[str, dict[int, list[float]]], counts: list[int]) -> None:
    print(f"\n{title}")
    print(f"{'':28}" + "".join(f"{f'{n} worker' + 's' * (n > 1) + ': median (min-max) s':>34}" for n in counts))
    for name, by_n in rows.items():
        print(f"{name:28}" + "".join(f"{_spread(by_n.get(n) or [0.0]):>34}" for n in counts))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--against", type=Path, help="another checkout (e.g. a `git archive` of an older commit): "
                                                 "its whole command alternates with this one's")
    ap.add_argument("--driver", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.driver:
        return driver(args.driver[0], args.driver[1], int(args.driver[2]))
    roots = {"lossbench run": ROOT, **({f"lossbench run ({args.against})": args.against} if args.against else {})}
    for root in roots.values():
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(root / "lossbench")], check=True, env=_env())
    counts = [1, args.workers]
    wall: dict[str, dict[int, list[float]]] = {"python -c pass": {}, **{k: {} for k in roots}}
    phases: dict[str, dict[int, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "grid.yaml"
        cfg.write_text(GRID.format(epochs=args.epochs))
        for i in range(args.repeats):
            for n in counts:
                wall["python -c pass"].setdefault(n, []).append(_wall([sys.executable, "-c", "pass"]))
                for label, root in roots.items():
                    out = Path(tmp) / f"w{n}-{i}-{len(wall[label].get(n, []))}{root.name}"
                    wall[label].setdefault(n, []).append(
                        _wall([sys.executable, "-m", "lossbench", "run", str(cfg), "--out", str(out), "-q",
                               "--workers", str(n)], root))
                for name, t in _phases(cfg, Path(tmp) / f"p{n}-{i}", n).items():
                    phases.setdefault(name, {}).setdefault(n, []).append(t)
            print(f"repeat {i + 1}: " + ", ".join(f"{n} worker{'s' * (n > 1)} {wall['lossbench run'][n][-1]:.2f} s"
                                                   for n in counts), flush=True)
    _report(f"16 runs x {args.epochs} epochs, whole command (wall)", wall, counts)
    order = sorted(phases, key=lambda k: -statistics.median(phases[k].get(counts[0]) or [0.0]))
    _report("where the parent's wall time goes (driver; exclusive times)", {k: phases[k] for k in order}, counts)


if __name__ == "__main__":
    main()
