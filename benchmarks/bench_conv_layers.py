"""Image layers' speed: one forward + backward pass of a layer stack, lossbench against torch.

The stacks are the issue-11 shapes on 28x28 single-channel images, batch 128: `2c2d`
(conv 5x5 32 same, ReLU, max-pool 2, conv 5x5 64 same, ReLU, max-pool 2, dense 1024, dense
10), `lenet` (conv 5x5 6 same, ReLU, max-pool 2, conv 5x5 16, ReLU, max-pool 2, dense 120,
84, 10) and `tiny` (conv 3x3 8 same, pool, conv 3x3 16 same, pool, dense 10). No optimizer,
no data loading: the layers alone. Each measurement is its own process (OpenBLAS's and
torch's thread pools would fight in one), lossbench and torch (2 threads) alternate, and the
ratio is the median over the pairs of the per-process minimum step time.

    python benchmarks/bench_conv_layers.py [--repeats 3] [--steps 20] [--stack 2c2d]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

# (in_channels, out_channels, kernel, padding) per conv, each followed by ReLU and max-pool 2;
# then the dense widths after flattening
STACKS = {
    "2c2d": ([(1, 32, 5, "same"), (32, 64, 5, "same")], [1024, 10]),
    "lenet": ([(1, 6, 5, "same"), (6, 16, 5, 0)], [120, 84, 10]),
    "tiny": ([(1, 8, 3, "same"), (8, 16, 3, "same")], [10]),
}
BATCH = 128


def flat_size(convs) -> int:
    h = 28
    for _, _, k, pad in convs:
        h = (h if pad == "same" else h - k + 1) // 2
    return convs[-1][1] * h * h


def worker_lossbench(stack: str, steps: int) -> float:
    import numpy as np

    from lossbench.engine import nn
    from lossbench.engine.nn.layers import Linear, ReLU

    convs, dense = STACKS[stack]
    layers = []
    for c_in, c_out, k, pad in convs:
        layers += [nn.LAYERS.build("conv2d", in_channels=c_in, out_channels=c_out, kernel_size=k, padding=pad),
                   ReLU(), nn.LAYERS.build("max_pool2d", kernel_size=2)]
    layers.append(nn.LAYERS.build("flatten"))
    width = flat_size(convs)
    for i, d in enumerate(dense):
        layers.append(Linear(width, d))
        if i < len(dense) - 1:
            layers.append(ReLU())
        width = d
    net = nn.Sequential(layers, np.random.default_rng(0), "torch").allocate()
    rng = np.random.default_rng(0)
    x = rng.random((BATCH, 1, 28, 28), dtype=np.float32)
    dy = rng.normal(size=(BATCH, dense[-1])).astype(np.float32)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        net.forward(x, True)
        net.backward(dy.copy())
        times.append(time.perf_counter() - t)
    return min(times[2:])


def worker_torch(stack: str, steps: int) -> float:
    import torch

    torch.set_num_threads(2)
    T = torch.nn
    convs, dense = STACKS[stack]
    layers = []
    for c_in, c_out, k, pad in convs:
        layers += [T.Conv2d(c_in, c_out, k, padding=pad), T.ReLU(), T.MaxPool2d(2)]
    layers.append(T.Flatten())
    width = flat_size(convs)
    for i, d in enumerate(dense):
        layers.append(T.Linear(width, d))
        if i < len(dense) - 1:
            layers.append(T.ReLU())
        width = d
    net = T.Sequential(*layers)
    x = torch.rand(BATCH, 1, 28, 28)
    dy = torch.randn(BATCH, dense[-1])
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        out = net(x)
        net.zero_grad(set_to_none=False)
        out.backward(dy)
        times.append(time.perf_counter() - t)
    return min(times[2:])


def run(side: str, stack: str, steps: int) -> float:
    out = subprocess.run([sys.executable, __file__, "--worker", side, "--stack", stack, "--steps", str(steps)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stack", choices=[*STACKS, "all"], default="all")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--worker", choices=["lossbench", "torch"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        fn = worker_lossbench if args.worker == "lossbench" else worker_torch
        print(json.dumps(fn(args.stack, args.steps)))
        return
    for stack in STACKS if args.stack == "all" else [args.stack]:
        pairs = [(run("lossbench", stack, args.steps), run("torch", stack, args.steps)) for _ in range(args.repeats)]
        ours = statistics.median(p[0] for p in pairs)
        ref = statistics.median(p[1] for p in pairs)
        ratio = statistics.median(p[0] / p[1] for p in pairs)
        print(f"{stack:6s} batch {BATCH} forward+backward: lossbench {ours * 1e3:6.1f} ms, "
              f"torch {ref * 1e3:6.1f} ms, ratio {ratio:.2f}")


if __name__ == "__main__":
    main()
