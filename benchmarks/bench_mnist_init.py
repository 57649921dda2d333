"""MNIST test accuracy of the shipped MLP under each normalization and init, and torch's.

The recipe of configs/mnist.yaml for one cell: MLP 784-256-128-10 (ReLU), cross-entropy,
Adam lr 1e-3, 10 epochs, batch 128, val_fraction 0.1, over seeds 0, 1, 2. Variants:

  per-pixel + he     lossbench before 0.2: one mean/std per pixel, He-normal init
  global + he        one mean/std for the image (torchvision's convention), He-normal
  global + torch     ... with torch's nn.Linear init (uniform ±1/sqrt(fan_in), biases too)
  global + xavier    ... with Xavier-uniform weights, zero biases
  torch              torch 2.x itself on the same arrays (global normalization, its default init)

Each variant runs in its own process (torch and NumPy never share one). Needs the real
MNIST: LOSSBENCH_DATA=/work/shared/data, or a cache `lossbench data fetch mnist` made.

    LOSSBENCH_DATA=/path/to/data python benchmarks/bench_mnist_init.py [--seeds 0 1 2] [--epochs 10]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys

VARIANTS = {  # name -> (normalization, init); init None: torch itself
    "per-pixel + he": ("per-pixel", "he"),
    "global + he": ("global", "he"),
    "global + torch": ("global", "torch"),
    "global + xavier": ("global", "xavier"),
    "torch": ("global", None),
}


def arrays(normalization: str, seed: int):
    """The run's split as lossbench makes it, normalized per pixel or globally."""
    from lossbench import data

    if normalization == "global":
        return data.load("mnist", seed=seed, val_fraction=0.1, normalize="standard")
    ds = data.load("mnist", seed=seed, val_fraction=0.1, normalize="none")
    mean, std = ds.x_train.mean(axis=0), ds.x_train.std(axis=0)
    std[std == 0] = 1.0
    for part in (ds.x_train, ds.x_val, ds.x_test):
        part -= mean
        part /= std
    return ds


def run_lossbench(normalization: str, init: str, seed: int, epochs: int) -> float:
    from lossbench.engine.train import train

    res = train(arrays(normalization, seed), model={"name": "mlp", "hidden": [256, 128], "init": init},
                loss="cross_entropy", optimizer={"name": "adam", "lr": 1e-3},
                train={"epochs": epochs, "batch_size": 128}, seed=seed)
    return res.summary["test_accuracy"]


def run_torch(seed: int, epochs: int) -> float:
    import numpy as np
    import torch

    ds = arrays("global", seed)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128),
                                torch.nn.ReLU(), torch.nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.from_numpy(ds.x_train), torch.from_numpy(ds.y_train)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = torch.from_numpy(rng.permutation(len(x)))
        for start in range(0, len(x), 128):
            batch = order[start:start + 128]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            opt.step()
    with torch.no_grad():
        pred = model(torch.from_numpy(ds.x_test)).argmax(1).numpy()
    return float((pred == ds.y_test).mean())


def child(variant: str, seeds: list[int], epochs: int) -> None:
    normalization, init = VARIANTS[variant]
    accs = [run_torch(s, epochs) if init is None else run_lossbench(normalization, init, s, epochs) for s in seeds]
    print(json.dumps(accs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--variant", help=argparse.SUPPRESS)  # the child process's one variant
    args = ap.parse_args()
    if args.variant:
        child(args.variant, args.seeds, args.epochs)
        return
    print(f"MNIST, MLP 256-128, Adam 1e-3, {args.epochs} epochs, batch 128, seeds {args.seeds}; "
          f"{platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print(f"{'variant':<18} {'mean test acc':>13}  {'min':>6}  {'max':>6}  per seed")
    for variant in VARIANTS:
        cmd = [sys.executable, __file__, "--variant", variant, "--epochs", str(args.epochs),
               "--seeds", *map(str, args.seeds)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["?"])[-1]
            print(f"{variant:<18} skipped: {last}")
            continue
        accs = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{variant:<18} {statistics.mean(accs):>13.4f}  {min(accs):.4f}  {max(accs):.4f}  "
              + " ".join(f"{a:.4f}" for a in accs))


if __name__ == "__main__":
    main()
