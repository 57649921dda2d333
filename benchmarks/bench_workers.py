"""Sweep throughput: a 16-run grid of small models with 1 worker against N workers.

Times the whole `lossbench run` command as a user runs it (process start, validation,
worker start-up, training, tables), into a fresh results directory each time. Runs with
1 and N workers alternate, so a shared machine's drifting load hits both alike; the
speedup is the median over the pairs.

    python benchmarks/bench_workers.py [--workers 2] [--repeats 3] [--epochs 200]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GRID = """
name: bench-workers
dataset: {{name: spirals, n_samples: 3000, n_classes: 3}}
model: {{name: mlp, hidden: [64, 64], activation: tanh}}
loss: cross_entropy
optimizer: {{name: adam, lr: 0.003}}
train: {{epochs: {epochs}, batch_size: 32}}
grid:
  optimizer.name: [sgd, momentum, rmsprop, adam]
  optimizer.lr: [0.1, 0.03, 0.01, 0.003]
"""


def timed_run(cfg: Path, out: Path, workers: int) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "lossbench", "run", str(cfg), "--out", str(out), "--fresh", "-q",
                    "--workers", str(workers)], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "grid.yaml"
        cfg.write_text(GRID.format(epochs=args.epochs))
        one, many = [], []
        for i in range(args.repeats):
            one.append(timed_run(cfg, Path(tmp) / "one", 1))
            many.append(timed_run(cfg, Path(tmp) / "many", args.workers))
            print(f"pair {i + 1}: 1 worker {one[-1]:.2f} s, {args.workers} workers {many[-1]:.2f} s, "
                  f"speedup {one[-1] / many[-1]:.2f}x", flush=True)
    ratios = sorted(a / b for a, b in zip(one, many))
    print(f"16 runs x {args.epochs} epochs: 1 worker {statistics.median(one):.2f} s, {args.workers} workers "
          f"{statistics.median(many):.2f} s (medians); speedup {statistics.median(ratios):.2f}x "
          f"(pairs {ratios[0]:.2f}-{ratios[-1]:.2f})")


if __name__ == "__main__":
    main()
