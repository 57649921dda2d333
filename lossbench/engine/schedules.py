"""Learning-rate schedules, stepped once per epoch as torch.optim.lr_scheduler is.

A schedule maps the epoch about to start (0-based) to a learning rate; only
reduce_on_plateau also looks at the monitored value of the epoch that just ended.
"""

from __future__ import annotations

import math

from lossbench.registry import Int, Optional, Real, Registry

SCHEDULES = Registry("schedule", section="train.schedule", context=("base_lr", "epochs"))
GAMMA = Real(gt=0)
NONNEG = Real(ge=0)


class Schedule:
    """Maps an epoch to a learning rate: `schedule(epoch, metric)`.

    The training loop calls it once before every epoch, in order, with the 0-based epoch
    about to start and the validation loss of the epoch that just ended (None before the
    first); the value it returns is the optimizer's lr for that whole epoch. It may keep
    state between calls (reduce_on_plateau does). `base_lr` is the optimizer's lr and
    `epochs` the run's length, both given by the caller, never by a config.
    """

    def __init__(self, base_lr: float, epochs: int):
        self.base_lr, self.epochs = float(base_lr), int(epochs)

    def __call__(self, epoch: int, metric: float | None = None) -> float:
        raise NotImplementedError


@SCHEDULES.register("constant")
class Constant(Schedule):
    """The optimizer's lr for every epoch."""

    def __call__(self, epoch, metric=None):
        return self.base_lr


@SCHEDULES.register("step", step_size=Int(ge=1), gamma=GAMMA)
class Step(Schedule):
    """Multiply the lr by gamma every step_size epochs, StepLR.

    lr_e = lr * gamma^(e // step_size)
    """

    def __init__(self, base_lr, epochs, step_size: int = 10, gamma: float = 0.1):
        super().__init__(base_lr, epochs)
        self.step_size, self.gamma = step_size, float(gamma)

    def __call__(self, epoch, metric=None):
        return self.base_lr * self.gamma ** (epoch // self.step_size)


@SCHEDULES.register("exponential", gamma=GAMMA)
class Exponential(Schedule):
    """Multiply the lr by gamma every epoch, ExponentialLR.

    lr_e = lr * gamma^e
    """

    def __init__(self, base_lr, epochs, gamma: float = 0.9):
        super().__init__(base_lr, epochs)
        self.gamma = float(gamma)

    def __call__(self, epoch, metric=None):
        return self.base_lr * self.gamma**epoch


def _cosine(base: float, eta_min: float, e: float, span: float) -> float:
    return eta_min + (base - eta_min) * (1.0 + math.cos(math.pi * e / span)) / 2.0


@SCHEDULES.register("cosine", T_max=Optional(Int(ge=1)), eta_min=NONNEG)
class Cosine(Schedule):
    """Cosine annealing from lr to eta_min over T_max epochs, CosineAnnealingLR's closed form.

    lr_e = eta_min + (lr - eta_min)(1 + cos(pi e / T_max)) / 2
    periodic past T_max as torch's is; T_max defaults to the number of epochs
    """

    def __init__(self, base_lr, epochs, T_max: int | None = None, eta_min: float = 0.0):
        super().__init__(base_lr, epochs)
        self.T_max = T_max if T_max is not None else max(epochs, 1)
        self.eta_min = float(eta_min)

    def __call__(self, epoch, metric=None):
        return _cosine(self.base_lr, self.eta_min, epoch, self.T_max)


@SCHEDULES.register("warmup_cosine", warmup_epochs=Int(ge=0), start_factor=Real(gt=0, le=1), eta_min=NONNEG)
class WarmupCosine(Schedule):
    """Linear warmup, then cosine decay to eta_min (LinearLR followed by CosineAnnealingLR).

    e < warmup_epochs: lr_e = lr (start_factor + (1 - start_factor) e / warmup_epochs)
    after: cosine from lr to eta_min over the remaining epochs
    """

    def __init__(self, base_lr, epochs, warmup_epochs: int = 1, start_factor: float = 0.1, eta_min: float = 0.0):
        super().__init__(base_lr, epochs)
        self.warmup, self.start, self.eta_min = warmup_epochs, float(start_factor), float(eta_min)

    def __call__(self, epoch, metric=None):
        if epoch < self.warmup:
            return self.base_lr * (self.start + (1.0 - self.start) * epoch / self.warmup)
        span = max(self.epochs - self.warmup, 1)
        return _cosine(self.base_lr, self.eta_min, min(epoch - self.warmup, span), span)


@SCHEDULES.register("reduce_on_plateau", factor=Real(gt=0, lt=1), patience=Int(ge=0), threshold=NONNEG,
                    cooldown=Int(ge=0), min_lr=NONNEG)
class ReduceOnPlateau(Schedule):
    """Cut the lr when the validation loss stops improving, ReduceLROnPlateau (mode min, rel).

    no relative improvement by threshold for more than patience epochs: lr = max(lr factor, min_lr)
    then wait cooldown epochs before counting again
    """

    def __init__(self, base_lr, epochs, factor: float = 0.1, patience: int = 10, threshold: float = 1e-4,
                 cooldown: int = 0, min_lr: float = 0.0):
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


def build(name: str, base_lr: float, epochs: int, /, **hyperparams) -> Schedule:
    return SCHEDULES.build(name, base_lr, epochs, **hyperparams)
