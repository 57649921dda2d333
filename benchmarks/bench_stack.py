"""Stacked runs: many small runs trained as one model against one after another.

Two measurements, each in its own process, alternating so a drifting machine hits all
alike; figures are medians over the repeats with the spread (min-max):

1. in one process (lossbench.engine.train): `train` for each run one after another, against
   `train_stack` on all of them at once (one BLAS thread, as a sweep worker has);
2. the whole command `lossbench run CONFIG` with `--stack off` against `--stack auto`, with 1
   and 2 workers: process start, validation, workers, training and tables included.

Grids: 16 and 64 runs of MLP 2-32-32-2 on spirals (learning rate x seed), MLP 64-64 on
moons (optimizer x learning rate), the shipped quickstart, and an MNIST MLP grid (BLAS-bound:
`auto` must leave it alone, and not be slower).

    python benchmarks/bench_stack.py [--repeats 3] [--only NAME]
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

ROOT = Path(__file__).resolve().parents[1]
LRS = [0.3, 0.1, 0.03, 0.01]
OPTS = ["sgd", "momentum", "rmsprop", "adam"]
SPIRALS = {"name": "spirals", "n_samples": 1000, "n_classes": 2}
GRIDS = {  # optimizers x learning rates x seeds
    "spirals16": dict(dataset=SPIRALS, hidden=[32, 32], optimizers=["sgd"], seeds=[0, 1, 2, 3], epochs=60),
    "spirals64": dict(dataset=SPIRALS, hidden=[32, 32], optimizers=OPTS, seeds=[0, 1, 2, 3], epochs=30),
    "moons16": dict(dataset={"name": "moons", "n_samples": 1000}, hidden=[64, 64], optimizers=OPTS, seeds=[0],
                    epochs=60),
}
BATCH = 16


def grid_runs(g: dict) -> list[dict]:
    return [dict(model={"name": "mlp", "hidden": g["hidden"]}, loss="cross_entropy",
                 optimizer={"name": opt, "lr": lr}, seed=s, train={"epochs": g["epochs"], "batch_size": BATCH})
            for opt in g["optimizers"] for lr in LRS for s in g["seeds"]]


def worker(name: str, mode: str) -> float:
    from threadpoolctl import threadpool_limits

    from lossbench import data
    from lossbench.engine.train import train, train_stack

    threadpool_limits(1)
    g = GRIDS[name]
    d = data.load(g["dataset"]["name"], **{k: v for k, v in g["dataset"].items() if k != "name"})
    runs = grid_runs(g)
    start = time.perf_counter()
    if mode == "alone":
        for r in runs:
            train(d, **r)
    else:
        train_stack(d, runs)
    return time.perf_counter() - start


def config_text(name: str) -> str:
    if name == "quickstart":
        return (ROOT / "configs" / "quickstart.yaml").read_text()
    if name == "mnist_mlp":
        return """name: mnist-mlp
dataset: {name: mnist, limit: 12000}
model: {name: mlp, hidden: [256, 128]}
loss: cross_entropy
optimizer: {name: sgd, lr: 0.05, momentum: 0.9}
train: {epochs: 2, batch_size: 128}
grid:
  optimizer.lr: [0.1, 0.05, 0.02, 0.01]
"""
    g = GRIDS[name]
    return json.dumps({"name": f"bench-{name}", "dataset": g["dataset"],
                       "model": {"name": "mlp", "hidden": g["hidden"]}, "loss": "cross_entropy",
                       "optimizer": {"name": "sgd", "lr": 0.1}, "train": {"epochs": g["epochs"], "batch_size": BATCH},
                       "seeds": g["seeds"], "grid": {"optimizer.name": g["optimizers"], "optimizer.lr": LRS}})


def command(name: str, stack: str, workers: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "c.yaml"
        cfg.write_text(config_text(name))
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "lossbench", "run", str(cfg), "--out", str(Path(tmp) / "out"), "-q",
                        "--stack", stack, "--workers", str(workers)], check=True, capture_output=True)
        return time.perf_counter() - start


def measure(args: list[str]) -> float:
    out = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):6.2f} s ({min(xs):.2f}-{max(xs):.2f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", help="one grid (spirals16, spirals64, moons16, quickstart, mnist_mlp)")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--command", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(worker(*args.worker))
        return
    if args.command:
        print(command(args.command[0], args.command[1], int(args.command[2])))
        return
    env_note = "LOSSBENCH_DATA=" + os.environ.get("LOSSBENCH_DATA", "(unset)")
    print(f"repeats {args.repeats}; {env_note}")
    for name in [args.only] if args.only else [*GRIDS, "quickstart", "mnist_mlp"]:
        if name in GRIDS:
            n = len(grid_runs(GRIDS[name]))
            t = {m: [] for m in ("alone", "stack")}
            for _ in range(args.repeats):
                for m in t:
                    t[m].append(measure(["--worker", name, m]))
            ratio = statistics.median(a / b for a, b in zip(t["alone"], t["stack"]))
            print(f"{name} ({n} runs), one process: one after another {spread(t['alone'])}, "
                  f"stacked {spread(t['stack'])}: {ratio:.1f}x")
        t = {(s, w): [] for s in ("off", "auto") for w in (1, 2)}
        for _ in range(args.repeats):
            for s, w in t:
                t[(s, w)].append(measure(["--command", name, s, str(w)]))
        cells = ", ".join(f"--stack {s} -j{w} {spread(v)}" for (s, w), v in t.items())
        base = statistics.median(t[("off", 1)])
        best = min(t, key=lambda k: statistics.median(t[k]))
        print(f"{name}, whole command: {cells}; best {best[0]} -j{best[1]}: "
              f"{base / statistics.median(t[best]):.1f}x faster than --stack off -j1")


if __name__ == "__main__":
    main()
