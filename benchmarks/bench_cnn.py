"""CNN training speed: lossbench against PyTorch CPU, one training step at a time.

Each model trains on MNIST (batch 128, cross-entropy, SGD momentum 0.9 lr 0.01) the way
lossbench's training loop does it: shuffled batch, forward, loss and its gradient,
backward, gradient norm, optimizer step. torch (2 threads, eager) does forward, loss,
zero_grad, backward, step on the same batches. Each measurement is its own process
(OpenBLAS's and torch's thread pools would fight in one), lossbench and torch alternate,
and the figures are medians over the processes of each process's median step time, with
the spread (min-max over processes).

Printed per model: step and epoch time of each side (an epoch is 469 steps; `--epoch` times
a real one instead of projecting it), the ratio lossbench / torch (median of the pairs),
lossbench's GFLOP/s (the convolutions' and dense layers' multiply-adds, forward and
backward) and its share of this machine's sgemm peak (a 2048^3 float32 matmul in NumPy,
same threads).

    LOSSBENCH_DATA=../shared/data python benchmarks/bench_cnn.py [--repeats 3] [--steps 40]
        [--model 2c2d|lenet5|tiny|all] [--epoch]

Without MNIST (LOSSBENCH_DATA unset and no download) it falls back to random images of
MNIST's shape: the timings do not depend on the pixel values.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

BATCH, STEPS_PER_EPOCH = 128, 469  # ceil(60000 / 128)
# lossbench model options; the torch twin is built from the same description
MODELS = {
    "2c2d": {"name": "2c2d"},
    "lenet5": {"name": "lenet5"},
    "tiny": {"name": "cnn", "channels": [8, 16], "kernel_size": 3, "hidden": []},
}
OPTIMIZER = {"name": "sgd", "lr": 0.01, "momentum": 0.9}


def mnist():
    """(dataset, x_train (N, 784) float32, labels) of MNIST normalized as lossbench does, or
    (None, random images of its shape, random labels) when the data is not on this machine."""
    import numpy as np

    from lossbench import data
    from lossbench.errors import DataError

    try:
        d = data.load("mnist", val_fraction=0.0)
        return d, d.x_train, d.y_train
    except DataError:
        rng = np.random.default_rng(0)
        return None, rng.normal(size=(60000, 784)).astype(np.float32), rng.integers(0, 10, 60000)


def layer_flops(net, batch: int) -> float:
    """Floating-point operations of one forward + backward pass: 2 per multiply-add, the
    forward product, the weight gradient and (except in the first layer) the input gradient."""
    from lossbench.engine.nn.conv import Conv2d
    from lossbench.engine.nn.layers import Linear

    total, first, h, w = 0.0, True, 28, 28
    for layer in net.layers:
        if isinstance(layer, Conv2d):
            h, w = layer.output_size(h, w)
            fwd = 2.0 * batch * h * w * layer.k * layer.k * layer.c_in * layer.c_out
        elif isinstance(layer, Linear):
            fwd = 2.0 * batch * layer.params[0].size
        elif type(layer).__name__ == "MaxPool2d":
            h, w = h // 2, w // 2
            continue
        else:
            continue
        total += fwd * (2 if first else 3)
        first = False
    return total


def sgemm_peak() -> float:
    """GFLOP/s of a 2048^3 float32 matmul, best of 5."""
    import numpy as np

    a = np.random.default_rng(0).random((2048, 2048), dtype=np.float32)
    a @ a
    best = min(_timed(lambda: a @ a) for _ in range(5))
    return 2 * 2048**3 / best / 1e9


def _timed(f) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def worker_lossbench(model: str, steps: int, epoch: bool) -> dict:
    import math

    import numpy as np

    from lossbench.engine import train

    d, x, y = mnist()
    if d is None:  # random images: a dataset object for the model's input shape
        from types import SimpleNamespace

        d = SimpleNamespace(x_train=x, y_train=y, x_val=x[:0], y_val=y[:0], x_test=x[:0], y_test=y[:0],
                            n_features=784, n_classes=10, task="classification", image_shape=(1, 28, 28))
    run = train._setup(d, MODELS[model], "cross_entropy", OPTIMIZER, {"batch_size": BATCH, "epochs": 1}, 0)
    net, groups = train._stack(d, [run])  # what the training loop trains: a stack of one run
    xbuf = np.empty((1, BATCH, x.shape[1]), x.dtype)
    order = np.random.default_rng(0).permutation(len(x))
    t_train = run.targets[0]

    def step(i):
        idx = order[(i * BATCH) % (len(x) - BATCH):][:BATCH]
        xb = np.take(x, idx[None], axis=0, out=xbuf)
        out = net.forward(xb, train=True)
        value, grad = run.loss.value_and_grad(out[0], np.take(t_train, idx, axis=0))
        grads = net.backward(grad[None])
        math.sqrt(float(np.dot(grads[0], grads[0])))
        run.opt.step([grads])
        return value

    times = [_timed(lambda i=i: step(i)) for i in range(steps)][3:]
    result = {"step": statistics.median(times), "flops": layer_flops(run.net, BATCH), "peak": sgemm_peak()}
    if epoch:
        result["epoch"] = _timed(lambda: train._fit_epoch(net, groups, [run], [0], x, BATCH, xbuf))
    return result


def torch_model(model: str):
    import torch.nn as T

    if model == "2c2d":
        convs, dense = [(1, 32, 5, 2), (32, 64, 5, 2)], [3136, 1024, 10]
    elif model == "lenet5":
        convs, dense = [(1, 6, 5, 2), (6, 16, 5, 0)], [400, 120, 84, 10]
    else:
        convs, dense = [(1, 8, 3, 1), (8, 16, 3, 1)], [784, 10]
    layers = []
    for c_in, c_out, k, pad in convs:
        layers += [T.Conv2d(c_in, c_out, k, padding=pad), T.ReLU(), T.MaxPool2d(2)]
    layers.append(T.Flatten())
    for i in range(len(dense) - 1):
        layers.append(T.Linear(dense[i], dense[i + 1]))
        if i < len(dense) - 2:
            layers.append(T.ReLU())
    return T.Sequential(*layers)


def worker_torch(model: str, steps: int, epoch: bool) -> dict:
    import torch

    torch.set_num_threads(2)
    d, x, y = mnist()
    x = torch.tensor(x).reshape(-1, 1, 28, 28)
    y = torch.tensor(y, dtype=torch.long)
    net = torch_model(model)
    opt = torch.optim.SGD(net.parameters(), lr=OPTIMIZER["lr"], momentum=OPTIMIZER["momentum"])
    loss_fn = torch.nn.CrossEntropyLoss()
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))

    def step(i):
        idx = order[(i * BATCH) % (len(x) - BATCH):][:BATCH]
        out = net(x[idx])
        loss = loss_fn(out, y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()

    times = [_timed(lambda i=i: step(i)) for i in range(steps)][3:]
    result = {"step": statistics.median(times)}
    if epoch:
        result["epoch"] = _timed(lambda: [step(i) for i in range(STEPS_PER_EPOCH)])
    return result


def run(side: str, model: str, steps: int, epoch: bool) -> dict:
    cmd = [sys.executable, __file__, "--worker", side, "--model", model, "--steps", str(steps)] + ["--epoch"] * epoch
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def spread(values) -> str:
    return f"{statistics.median(values) * 1e3:7.1f} ms ({min(values) * 1e3:.1f}-{max(values) * 1e3:.1f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=[*MODELS, "all"], default="all")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--epoch", action="store_true", help="time one real epoch (469 steps) in every process")
    ap.add_argument("--worker", choices=["lossbench", "torch"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        fn = worker_lossbench if args.worker == "lossbench" else worker_torch
        print(json.dumps(fn(args.model, args.steps, args.epoch)))
        return
    for model in MODELS if args.model == "all" else [args.model]:
        pairs = [(run("lossbench", model, args.steps, args.epoch), run("torch", model, args.steps, args.epoch))
                 for _ in range(args.repeats)]
        ours, ref = [p[0]["step"] for p in pairs], [p[1]["step"] for p in pairs]
        ratio = statistics.median(a / b for a, b in zip(ours, ref))
        gflops = pairs[0][0]["flops"] / statistics.median(ours) / 1e9
        peak = statistics.median(p[0]["peak"] for p in pairs)
        print(f"{model:7s} step: lossbench {spread(ours)}, torch {spread(ref)}, ratio {ratio:.2f}; "
              f"lossbench {gflops:.0f} GFLOP/s = {gflops / peak:.0%} of sgemm peak ({peak:.0f} GFLOP/s)")
        if args.epoch:
            e_ours, e_ref = [p[0]["epoch"] for p in pairs], [p[1]["epoch"] for p in pairs]
            e_ratio = statistics.median(a / b for a, b in zip(e_ours, e_ref))
            print(f"{'':7s} epoch: lossbench {statistics.median(e_ours):.1f} s, "
                  f"torch {statistics.median(e_ref):.1f} s, ratio {e_ratio:.2f}")
        else:
            e_ours, e_ref = (statistics.median(t) * STEPS_PER_EPOCH for t in (ours, ref))
            print(f"{'':7s} epoch ({STEPS_PER_EPOCH} x median step): lossbench {e_ours:.1f} s, torch {e_ref:.1f} s")

if __name__ == "__main__":
    main()
