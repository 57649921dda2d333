"""The learning-rate range test (Smith 2017, as fastai's `lr_find`): train from the
initial point while the learning rate grows exponentially, one step at a time, and read
a rate off the curve of the smoothed loss against the rate.

    lr_i = start * (end / start) ** (i / (steps - 1))            i = 0 .. steps - 1
    avg_i = beta * avg_{i-1} + (1 - beta) * loss_i,  avg_-1 = 0  (beta = 0.98)
    smoothed_i = avg_i / (1 - beta ** (i + 1))                   (debiased, as fastai's AvgSmoothLoss)
    stop after the first step whose smoothed loss is not finite or exceeds 4x the best so far

The steps are the training loop's own (train._step: its batches, loss, clipping and
optimizer, built by train._setup and train._stack), with the rate written into the
optimizer before each step as a schedule does. Suggestions follow fastai
(fastai/callback/schedule.py), on the smoothed curve without its first steps // 10 and
last 5 points (fastai's lr_find trims them: the start is flat, the end diverging).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from lossbench.engine import optimizers
from lossbench.engine.train import _batches, _setup, _shuffled, _stack, _step
from lossbench.registry import fail, split_named

BETA = 0.98  # fastai's smoothing of the loss
DIVERGE = 4.0  # stop once the smoothed loss exceeds this many times the best
SKIP_END = 5  # points fastai's lr_find drops from the end of the curve before suggesting


def lr_schedule(start: float, end: float, steps: int) -> np.ndarray:
    """The rates of the steps: exponential from `start` (step 0) to `end` (the last)."""
    check_range(start, end, steps)
    return start * (end / start) ** (np.arange(steps) / (steps - 1))


def check_range(start: float, end: float, steps: int, rules=()) -> None:
    """The test's options (ConfigError, one line naming the option)."""
    if not (isinstance(start, (int, float)) and math.isfinite(start) and start > 0):
        raise fail("--start", "must be a learning rate > 0", start)
    if not (isinstance(end, (int, float)) and math.isfinite(end) and end > start):
        raise fail("--end", f"must be a finite learning rate > --start ({start:g})", end)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise fail("--steps", "must be a whole number >= 2", steps)
    for r in rules:
        if r not in RULES:
            raise fail("--suggest", f"must be one of {list(RULES)}", r, list(RULES))


class Smoother:
    """The debiased moving average of the batch losses, and the stop rule.

    `add(loss)` returns (smoothed loss, stop). Stop when the smoothed loss is not finite or
    exceeds DIVERGE times the best so far; for a loss that goes below zero (gaussian_nll),
    where "4x the best" means nothing, when it rises more than 3x |best| above the best
    (the same rule for a positive best).
    """

    def __init__(self, beta: float = BETA, factor: float = DIVERGE):
        self.beta, self.factor = beta, factor
        self.avg, self.n, self.best = 0.0, 0, math.inf

    def add(self, loss: float) -> tuple[float, bool]:
        self.n += 1
        self.avg = self.beta * self.avg + (1 - self.beta) * loss
        smoothed = self.avg / (1 - self.beta ** self.n)
        if not math.isfinite(smoothed):
            return smoothed, True
        self.best = min(self.best, smoothed)
        return smoothed, smoothed - self.best > (self.factor - 1) * abs(self.best)


# ---- suggestions: fastai's rules, each (lrs, smoothed losses) -> index of the suggested point ----


def valley(lrs: np.ndarray, losses: np.ndarray) -> tuple[float, int]:
    """fastai's `valley`: the longest valley is the longest strictly decreasing subsequence
    of the losses (lds[i]: its length ending at i; the first i with the largest); its span
    (end - length, end) is cut in thirds and the suggestion sits at start + 1/3 + 1/6 of it.
    (fastai's max_start may be -1; a tiny curve whose index would be -1 gets 0, where
    fastai would wrap around to the last point.)"""
    n = len(losses)
    lds = [1] * n
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
    end = int(np.argmax(lds))  # the first longest, as fastai's strict `<` keeps
    start = end - lds[end]
    sections = (end - start) / 3
    idx = max(start + int(sections) + int(sections / 2), 0)
    return float(lrs[idx]), idx


def steep(lrs: np.ndarray, losses: np.ndarray) -> tuple[float, int]:
    """fastai's `steep`: the rate where the loss falls fastest against log lr (the left
    end of the steepest segment)."""
    slopes = np.diff(losses) / np.diff(np.log(lrs))
    idx = int(np.argmin(slopes))
    return float(lrs[idx]), idx


def minimum(lrs: np.ndarray, losses: np.ndarray) -> tuple[float, int]:
    """fastai's `minimum`: a tenth of the rate at the lowest loss (the point marked is
    that minimum)."""
    idx = int(np.argmin(losses))
    return float(lrs[idx]) / 10, idx


RULES = {"valley": valley, "steep": steep, "minimum": minimum}


def suggest(lrs: np.ndarray, smoothed: np.ndarray, steps: int, rules=tuple(RULES)) -> dict[str, tuple[float, int]]:
    """{rule: (suggested lr, index into lrs of the point it comes from)} on the curve trimmed
    as fastai's lr_find does ([steps // 10 : -5], and cut at the first NaN); NaN and -1
    for every rule when fewer than 2 points are left."""
    lrs, smoothed = np.asarray(lrs, np.float64), np.asarray(smoothed, np.float64)
    bad = np.flatnonzero(~np.isfinite(smoothed))
    stop = min(len(smoothed) - SKIP_END, bad[0] if len(bad) else len(smoothed))
    skip = steps // 10
    if stop - skip < 2:
        return {r: (math.nan, -1) for r in rules}
    out = {}
    for r in rules:
        lr, i = RULES[r](lrs[skip:stop], smoothed[skip:stop])
        out[r] = (lr, i + skip)
    return out


@dataclass
class LRFind:
    """One optimizer's range test: the curve as far as it went, and the suggestions."""

    lrs: np.ndarray  # each step's rate
    losses: np.ndarray  # each step's batch loss (before its update)
    smoothed: np.ndarray  # the debiased moving average of `losses`
    suggestions: dict[str, tuple[float, int]] = field(default_factory=dict)  # rule -> (lr, point index)
    stopped: str = "end"  # "end" (all steps ran) or "diverged" (the stop rule)
    steps: int = 0  # the steps asked for

    @property
    def min_loss(self) -> float:
        """The lowest smoothed loss (NaN if none was finite)."""
        return float(self.smoothed[self._argmin]) if self._argmin >= 0 else math.nan

    @property
    def min_lr(self) -> float:
        """The rate of the step with the lowest smoothed loss."""
        return float(self.lrs[self._argmin]) if self._argmin >= 0 else math.nan

    @property
    def _argmin(self) -> int:
        finite = np.isfinite(self.smoothed)
        return int(np.argmin(np.where(finite, self.smoothed, np.inf))) if finite.any() else -1


def lr_find(data, *, model, loss, optimizer, train=None, seed: int = 0, start: float = 1e-7, end: float = 10.0,
            steps: int = 100, rules=tuple(RULES)) -> LRFind:
    """The range test of one run config (`train`'s keyword arguments) on `data`: `steps`
    minibatch steps (as the run's batches come, epoch after epoch) from the initial
    weights, the rate set before each step; stops early by Smoother's rule.
    The rate is the optimizer section's: parts of a model with param groups follow it in
    proportion, as under a schedule. The train section's schedule and epochs are unused.
    lbfgs is refused: its steps come from its own curvature pairs and line search, and a
    rate that changes under them every step tests neither."""
    lrs = lr_schedule(start, end, steps)
    opt_name = split_named("optimizer", optimizer, "optimizer")[0]
    if optimizers.needs_closure(opt_name):
        raise fail("optimizer.name", "cannot be range-tested: its steps come from its own curvature pairs and line "
                                     "search (sweep its lr instead)", opt_name)
    check_range(start, end, steps, rules)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # divergence is the expected end
        run = _setup(data, model, loss, optimizer, train, seed)
        net, groups = _stack(data, [run])
        x, n = data.x_train, len(data.x_train)
        bs = n if run.full_batch else min(run.cfg.batch_size, n)
        xbuf = np.empty((1, bs, x.shape[1]), np.float32) if _shuffled([run]) else None  # as _train_ordered
        batches = itertools.chain.from_iterable(_batches([run], n, bs) for _ in itertools.count())
        smoother, raw, smoothed, stopped = Smoother(), [], [], "end"
        for lr, batch in zip(lrs, batches):
            run.opt.lr[run.row] = lr
            value = _step(net, groups, [run], x, batch, xbuf)[0][0]
            s, stop = smoother.add(value)
            raw.append(value)
            smoothed.append(s)
            if stop:
                stopped = "diverged"
                break
    k = len(raw)
    return LRFind(lrs[:k], np.array(raw), np.array(smoothed), suggest(lrs[:k], smoothed, steps, rules), stopped, steps)
