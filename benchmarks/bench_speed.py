"""Training throughput: lossbench (NumPy) against PyTorch on the CPU.

Trains an MLP 784-256-128-10 and logistic regression (784-10) on Fashion-MNIST with
Adam (or `--optimizer sgd`: SGD momentum 0.9; `adamw`; `muon`: Muon lr 0.02 on the weight
matrices and AdamW lr 1e-3 on the biases, torch.optim.Muon and torch.optim.AdamW on the
torch side, whose Newton-Schulz runs in real bfloat16), batch 128, cross-entropy, evaluating on
the validation split every epoch, and reports samples/s and GFLOP/s. When torch is
importable the same models and loop run with torch. Every run is its own process
(torch's and OpenBLAS's thread pools would fight over the cores in one), and lossbench
and torch runs alternate, so a shared machine's drifting load hits both sides alike; the
ratio is the median over the pairs.

    python benchmarks/bench_speed.py [--epochs 2] [--repeats 5] [--limit N] [--optimizer adam|sgd|adamw|muon]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

MODELS = {"mlp": [256, 128], "logreg": []}
OPTIMIZERS = {"adam": {"name": "adam", "lr": 1e-3}, "sgd": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
              "adamw": {"name": "adamw", "lr": 1e-3},
              "muon": {"name": "muon", "lr": 0.02, "fallback": {"name": "adamw", "lr": 1e-3}}}


def torch_optimizers(torch, net, o: dict) -> list:
    """The torch.optim optimizers lossbench's `o` is: Muon takes only matrices, so its
    fallback (AdamW) takes the biases, as lossbench's muon does."""
    if o["name"] == "muon":
        weights = [p for p in net.parameters() if p.ndim == 2]
        biases = [p for p in net.parameters() if p.ndim != 2]
        return [torch.optim.Muon(weights, lr=o["lr"]), torch.optim.AdamW(biases, lr=o["fallback"]["lr"])]
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[o["name"]]
    return [cls(net.parameters(), **{k: v for k, v in o.items() if k != "name"})]


def flops_per_sample(sizes: list[int]) -> int:
    """2 x multiply-adds of forward (x W), weight gradient (x^T dy) and input gradient
    (dy W^T, skipped for the first layer, whose input is data)."""
    macs = sum(a * b for a, b in zip(sizes, sizes[1:]))
    return 2 * (3 * macs - sizes[0] * sizes[1])


def load(limit):
    from lossbench import data

    return data.load("fashion_mnist", seed=0, limit=limit)


def worker_lossbench(model: str, args) -> dict:
    from lossbench.train import train

    ds = load(args.limit)
    hidden = MODELS[model]
    r = train(ds, model={"name": "mlp", "hidden": hidden} if hidden else "linear", loss="cross_entropy",
              optimizer=OPTIMIZERS[args.optimizer], train={"epochs": args.epochs, "batch_size": 128}, seed=0)
    # each epoch's training steps and validation pass (the test pass comes after)
    ends = [h["elapsed_s"] for h in r.history]
    return {"epoch_s": [b - a for a, b in zip([0.0] + ends, ends)], "n": len(ds.x_train),
            "test_accuracy": r.summary["test_accuracy"]}


def worker_torch(model: str, args) -> dict:
    import torch

    ds = load(args.limit)
    x, y = torch.from_numpy(ds.x_train), torch.from_numpy(ds.y_train)
    xv, yv = torch.from_numpy(ds.x_val), torch.from_numpy(ds.y_val)
    xt, yt = torch.from_numpy(ds.x_test), torch.from_numpy(ds.y_test)
    n = len(x)
    torch.manual_seed(0)
    sizes = [784, *MODELS[model], 10]
    layers = []
    for a, b in zip(sizes, sizes[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    net = torch.nn.Sequential(*layers[:-1])
    o = OPTIMIZERS[args.optimizer]
    opts = torch_optimizers(torch, net, o)
    epochs = []
    for _ in range(args.epochs):
        start = time.perf_counter()
        net.train()
        perm = torch.randperm(n)
        for lo in range(0, n, 128):
            idx = perm[lo : lo + 128]
            net.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
            loss.backward()
            for opt in opts:
                opt.step()
        net.eval()
        with torch.no_grad():
            out = net(xv)
            torch.nn.functional.cross_entropy(out, yv).item()
            (out.argmax(1) == yv).float().mean().item()
        epochs.append(time.perf_counter() - start)
    with torch.no_grad():
        acc = (net(xt).argmax(1) == yt).float().mean().item()
    return {"epoch_s": epochs, "n": n, "test_accuracy": acc, "threads": torch.get_num_threads()}


def spawn(side: str, model: str, args) -> dict | None:
    cmd = [sys.executable, __file__, "--worker", side, "--model", model, "--epochs", str(args.epochs),
           "--optimizer", args.optimizer]
    if args.limit:
        cmd += ["--limit", str(args.limit)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        if side == "torch":
            return None
        raise SystemExit(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5, help="runs per side and model")
    p.add_argument("--limit", type=int, default=None, help="train on a subset (quick check)")
    p.add_argument("--optimizer", choices=list(OPTIMIZERS), default="adam",
                   help="adam; sgd (momentum 0.9); adamw; muon")
    p.add_argument("--worker", choices=["lossbench", "torch"], help=argparse.SUPPRESS)
    p.add_argument("--model", choices=list(MODELS), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        fn = worker_lossbench if args.worker == "lossbench" else worker_torch
        print(json.dumps(fn(args.model, args)))
        return

    import platform

    import numpy as np
    from threadpoolctl import threadpool_info

    blas = ", ".join(f"{i['internal_api']} {i['version']} ({i['num_threads']} threads)" for i in threadpool_info())
    print(f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores; "
          f"numpy {np.__version__}; BLAS: {blas}")
    has_torch = True
    results = {m: {"lossbench": [], "torch": []} for m in MODELS}
    for r in range(args.repeats):
        for model in MODELS:
            # alternate who goes first, so neither side always follows the other
            sides = ["lossbench", "torch"] if r % 2 == 0 else ["torch", "lossbench"]
            for side in sides:
                if side == "torch" and not has_torch:
                    continue
                res = spawn(side, model, args)
                if res is None:
                    has_torch = False
                    print("torch not importable: lossbench figures only")
                    continue
                results[model][side].append(res)

    print(f"Fashion-MNIST, {args.optimizer}, batch 128, {args.repeats} runs x {args.epochs} epochs per side; "
          "samples/s of the median epoch [fastest epoch]")
    print(f"{'model':7} {'lossbench samples/s':>22} {'GFLOP/s':>8} {'acc':>6} {'torch samples/s':>22} {'acc':>6} "
          f"{'ratio (median of pairs)':>24}")
    for model, hidden in MODELS.items():
        fl = flops_per_sample([784, *hidden, 10])
        ours = results[model]["lossbench"]
        rate = lambda res: [res["n"] / e for e in res["epoch_s"]]  # noqa: E731
        o_rates = [x for res in ours for x in rate(res)]
        line = (f"{model:7} {statistics.median(o_rates):12,.0f} [{max(o_rates):7,.0f}] "
                f"{statistics.median(o_rates) * fl / 1e9:8.1f} {ours[-1]['test_accuracy']:6.3f}")
        theirs = results[model]["torch"]
        if theirs:
            t_rates = [x for res in theirs for x in rate(res)]
            pairs = [statistics.median(rate(a)) / statistics.median(rate(b)) for a, b in zip(ours, theirs)]
            line += (f" {statistics.median(t_rates):12,.0f} [{max(t_rates):7,.0f}] {theirs[-1]['test_accuracy']:6.3f} "
                     f"{statistics.median(pairs):8.2f}x (pairs {min(pairs):.2f}-{max(pairs):.2f})")
        print(line)
    if has_torch:
        print(f"torch {results['mlp']['torch'][0]['threads']} threads; every run a separate process")


if __name__ == "__main__":
    main()
