"""Learning-rate schedules, stepped once per epoch as torch.optim.lr_scheduler is.

A schedule maps the epoch about to start (0-based) to a learning rate; only
reduce_on_plateau also looks at the monitored value of the epoch that just ended.
"""

from __future__ import annotations

import math

from lossbench.errors import ConfigError
from lossbench.registry import Registry

SCHEDULES = Registry("schedule")


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


class Schedule:
    def __init__(self, base_lr: float, epochs: int):
        self.base_lr, self.epochs = float(base_lr), int(epochs)

    def __call__(self, epoch: int, metric: float | None = None) -> float:
        raise NotImplementedError


@SCHEDULES.register("constant")
class Constant(Schedule):
    """lr for every epoch."""

    def __call__(self, epoch, metric=None):
        return self.base_lr


@SCHEDULES.register("step")
class Step(Schedule):
    """lr * gamma^(epoch // step_size) — StepLR."""

    def __init__(self, base_lr, epochs, step_size: int = 10, gamma: float = 0.1):
        _check(isinstance(step_size, int) and step_size >= 1, f"train.schedule.step_size: must be an integer >= 1, got {step_size!r}")
        _check(gamma > 0, f"train.schedule.gamma: must be > 0, got {gamma}")
        super().__init__(base_lr, epochs)
        self.step_size, self.gamma = step_size, float(gamma)

    def __call__(self, epoch, metric=None):
        return self.base_lr * self.gamma ** (epoch // self.step_size)


@SCHEDULES.register("exponential")
class Exponential(Schedule):
    """lr * gamma^epoch — ExponentialLR."""

    def __init__(self, base_lr, epochs, gamma: float = 0.9):
        _check(gamma > 0, f"train.schedule.gamma: must be > 0, got {gamma}")
        super().__init__(base_lr, epochs)
        self.gamma = float(gamma)

    def __call__(self, epoch, metric=None):
        return self.base_lr * self.gamma**epoch


def _cosine(base: float, eta_min: float, e: float, span: float) -> float:
    return eta_min + (base - eta_min) * (1.0 + math.cos(math.pi * e / span)) / 2.0


@SCHEDULES.register("cosine")
class Cosine(Schedule):
    """eta_min + (lr - eta_min)(1 + cos(pi epoch / T_max)) / 2 — CosineAnnealingLR's
    closed form, periodic past T_max as torch's is; T_max defaults to the number of epochs."""

    def __init__(self, base_lr, epochs, T_max: int | None = None, eta_min: float = 0.0):
        super().__init__(base_lr, epochs)
        self.T_max = T_max if T_max is not None else max(epochs, 1)
        _check(isinstance(self.T_max, int) and self.T_max >= 1, f"train.schedule.T_max: must be an integer >= 1, got {T_max!r}")
        _check(eta_min >= 0, f"train.schedule.eta_min: must be >= 0, got {eta_min}")
        self.eta_min = float(eta_min)

    def __call__(self, epoch, metric=None):
        return _cosine(self.base_lr, self.eta_min, epoch, self.T_max)


@SCHEDULES.register("warmup_cosine")
class WarmupCosine(Schedule):
    """Linear warmup from lr * start_factor to lr over warmup_epochs, then cosine decay
    to eta_min over the remaining epochs (LinearLR followed by CosineAnnealingLR)."""

    def __init__(self, base_lr, epochs, warmup_epochs: int = 1, start_factor: float = 0.1, eta_min: float = 0.0):
        _check(isinstance(warmup_epochs, int) and warmup_epochs >= 0,
               f"train.schedule.warmup_epochs: must be an integer >= 0, got {warmup_epochs!r}")
        _check(0 < start_factor <= 1, f"train.schedule.start_factor: must be in (0, 1], got {start_factor}")
        _check(eta_min >= 0, f"train.schedule.eta_min: must be >= 0, got {eta_min}")
        super().__init__(base_lr, epochs)
        self.warmup, self.start, self.eta_min = warmup_epochs, float(start_factor), float(eta_min)

    def __call__(self, epoch, metric=None):
        if epoch < self.warmup:
            return self.base_lr * (self.start + (1.0 - self.start) * epoch / self.warmup)
        span = max(self.epochs - self.warmup, 1)
        return _cosine(self.base_lr, self.eta_min, min(epoch - self.warmup, span), span)


@SCHEDULES.register("reduce_on_plateau")
class ReduceOnPlateau(Schedule):
    """Multiply lr by factor when the monitored value (validation loss by default) has
    not improved by a relative threshold for more than `patience` epochs, then wait
    `cooldown` epochs; never below min_lr — ReduceLROnPlateau (mode min, rel)."""

    def __init__(self, base_lr, epochs, factor: float = 0.1, patience: int = 10, threshold: float = 1e-4,
                 cooldown: int = 0, min_lr: float = 0.0):
        _check(0 < factor < 1, f"train.schedule.factor: must be in (0, 1), got {factor}")
        _check(isinstance(patience, int) and patience >= 0, f"train.schedule.patience: must be an integer >= 0, got {patience!r}")
        _check(isinstance(cooldown, int) and cooldown >= 0, f"train.schedule.cooldown: must be an integer >= 0, got {cooldown!r}")
        _check(threshold >= 0, f"train.schedule.threshold: must be >= 0, got {threshold}")
        _check(min_lr >= 0, f"train.schedule.min_lr: must be >= 0, got {min_lr}")
        super().__init__(base_lr, epochs)
        self.factor, self.patience, self.threshold = float(factor), patience, float(threshold)
        self.cooldown, self.min_lr = cooldown, float(min_lr)
        self.lr, self.best, self.bad, self.cooling = self.base_lr, math.inf, 0, 0

    def __call__(self, epoch, metric=None):
        if metric is None or not math.isfinite(metric):
            return self.lr
        if metric < self.best * (1.0 - self.threshold):
            self.best, self.bad = metric, 0
        else:
            self.bad += 1
        if self.cooling > 0:
            self.cooling -= 1
            self.bad = 0
        if self.bad > self.patience:
            new = max(self.lr * self.factor, self.min_lr)
            if self.lr - new > 1e-8:
                self.lr = new
            self.cooling, self.bad = self.cooldown, 0
        return self.lr


def build(name: str, base_lr: float, epochs: int, **hyperparams) -> Schedule:
    return SCHEDULES.build(name, base_lr, epochs, **hyperparams)
