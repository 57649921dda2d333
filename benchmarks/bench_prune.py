"""Successive halving against the full search: the same trials, with and without `prune`.

Runs `lossbench run CONFIG` as a user does (a fresh results directory each time), once
as shipped and once with `--set prune=...`, alternating the two so a shared machine's
drifting load hits both alike. Prints each sweep's wall time, the pruned one's share of
the full one's (median and spread over the pairs), and whether both pick the same best
trial (the `compare` ranking on the metric, mean over seeds), with the full sweep's
figures for the pruned sweep's winner.

    python benchmarks/bench_prune.py [--config configs/search.yaml] [--repeats 1] [--workers 2]
        [--prune "{metric: val_accuracy, grace_epochs: 1, reduction_factor: 4}"] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lossbench
from lossbench import api
from lossbench.engine.metrics import higher_is_better


def timed_run(cfg: str, out: Path, workers: int, sets: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "lossbench", "run", cfg, "--out", str(out), "--fresh", "-q",
                    "--workers", str(workers), *(a for s in sets for a in ("--set", s))], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def best(out: Path, metric: str) -> tuple[str, float, dict, float]:
    """(the best trial's label, its metric, every finished trial's label -> metric, the best
    trial's std over seeds): the
    metric is the mean over seeds of each run's best epoch (no target: the config's would
    rank by epochs to it first)."""
    table = api.compare([out], metric=metric, target=None).table
    done = table[table["best_mean"].notna()]
    means = dict(zip(done["group"], done["best_mean"]))
    label = (max if higher_is_better(metric) else min)(means, key=means.get)
    return label, means[label], means, float(done.set_index("group").loc[label, "best_std"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/search.yaml")
    ap.add_argument("--prune", default="{metric: val_accuracy, grace_epochs: 1, reduction_factor: 4}")
    ap.add_argument("--metric", default="val_accuracy")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--set", dest="sets", action="append", default=[], help="passed on to both sweeps")
    args = ap.parse_args()
    full_t, pruned_t = [], []
    with tempfile.TemporaryDirectory() as tmp:
        full, pruned = Path(tmp) / "full", Path(tmp) / "pruned"
        for i in range(args.repeats):
            full_t.append(timed_run(args.config, full, args.workers, args.sets))
            pruned_t.append(timed_run(args.config, pruned, args.workers, [*args.sets, f"prune={args.prune}"]))
            print(f"pair {i + 1}: full {full_t[-1]:.1f} s, pruned {pruned_t[-1]:.1f} s, "
                  f"share {pruned_t[-1] / full_t[-1]:.1%}", flush=True)
        f_label, f_value, f_all, f_std = best(full, args.metric)
        p_label, p_value, _, _ = best(pruned, args.metric)
        runs = lossbench.load(pruned).runs
        n_trials = len(f_all)
    shares = sorted(p / f for p, f in zip(pruned_t, full_t))
    print(f"{args.config}: {n_trials} trials, {len(runs)} runs; full {statistics.median(full_t):.1f} s, "
          f"pruned {statistics.median(pruned_t):.1f} s (medians of {args.repeats}); share "
          f"{statistics.median(shares):.1%} (pairs {shares[0]:.1%}-{shares[-1]:.1%})")
    print("pruned sweep: " + ", ".join(f"{n} {s}" for s, n in runs.status.value_counts().items()))
    order = sorted(f_all, key=f_all.get, reverse=higher_is_better(args.metric))
    rank = order.index(p_label) + 1 if p_label in order else None
    print(f"best {args.metric} in the full sweep: {f_label} {f_value:.4f} (std over seeds {f_std:.4f})")
    print(f"best {args.metric} in the pruned sweep: {p_label} {p_value:.4f} (rank {rank} of {n_trials} in the "
          f"full sweep, {abs(f_value - f_all.get(p_label, p_value)):.4f} from the best) -> "
          f"{'the same trial' if p_label == f_label else 'another trial'}")


if __name__ == "__main__":
    main()
