"""Schedule-Free AdamW and SGD (facebookresearch/schedule_free)."""

from __future__ import annotations

import numpy as np

from lossbench.engine.optimizers.base import (
    BETAS,
    LR,
    NONNEG,
    OPTIMIZERS,
    Optimizer,
    _all,
    _hp,
    _lerp_to,
    _scale,
)
from lossbench.registry import Int, Real


class _ScheduleFree(Optimizer):
    """Schedule-Free (Defazio et al., 2024; facebookresearch/schedule_free): the model is
    trained at y, an interpolation of the base iterate z and the average x, and evaluated
    at x. `eval(rows)` moves p from y to x, `train(rows)` back (the reference's
    optimizer.eval()/train()); the training loop calls them around every evaluation.

    Per step: lr_t = lr min(1, t / warmup_steps); lr_max = max(lr_max, lr_t);
    w = t^r lr_max^weight_lr_power; c = w / sum(w); then, with the step's direction d,
    y = y + c (z - y) (torch's lerp); y += lr_t (beta (1 - c) - 1) d; z -= lr_t d.
    weight_decay adds wd y to d, at y, as the reference does (not torch's coupled decay).
    """

    def __init__(self, params, lr, beta, weight_decay, warmup_steps, r, weight_lr_power):
        self.beta, self.wd = _hp(beta), _hp(weight_decay)
        self.wd_on = bool(np.any(self.wd > 0))  # structural: the base class's branches
        self.warmup, self.r, self.power = _hp(warmup_steps), _hp(r), _hp(weight_lr_power)
        super().__init__(params, lr, 0.0)  # the decay is at y, in update
        self.lr_max, self.weight_sum = _hp(np.full_like(self._lr, -1.0)), _hp(np.zeros_like(self._lr))

    def init_state(self, p):
        return {"z": p.copy()}  # the reference clones p at the first step: p has not moved before it

    def begin_step(self) -> None:
        k = self.t - 1
        warm = np.where(self.warmup > 0, self.warmup, 1.0)
        self.lr_t = self._lr * np.where(k < self.warmup, (k + 1) / warm, 1.0)
        lr_max = np.maximum(self.lr_t, self.lr_max)
        weight = np.power(float(self.t), self.r) * np.power(lr_max, self.power)
        total = self.weight_sum + weight
        self.c = np.where(total != 0, weight / np.where(total != 0, total, 1.0), 0.0)
        self._keep(lr_max=lr_max, weight_sum=total)

    def descend(self, p, z, d, w) -> None:
        """The y and z updates for direction d (scratch w.tmp, w.tmp2 free)."""
        if self.wd_on:
            d += _scale(p, self.wd, w.tmp)
        _lerp_to(p, z, self.c, w.tmp, w.tmp2)
        p += _scale(d, self.lr_t * (self.beta * (1.0 - self.c) - 1.0), w.tmp)
        z -= _scale(d, self.lr_t, w.tmp)

    def eval(self, rows=None) -> None:
        """p from y to x, in the rows given (all by default): lerp towards z by 1 - 1/beta."""
        self._move(1.0 - 1.0 / self.beta, rows)

    def train(self, rows=None) -> None:
        """p from x back to y: lerp towards z by 1 - beta."""
        self._move(1.0 - self.beta, rows)

    def _move(self, weight, rows) -> None:
        if self.t == 0:
            return  # the reference has no z before the first step: nothing moves
        for p, s, w in zip(self.params, self.state, self.scratch):
            if rows is None or _all(np.asarray(rows)):
                _lerp_to(p, s["z"], weight, w.tmp, w.tmp2)
            else:
                for k in np.flatnonzero(rows):
                    _lerp_to(p[k], s["z"][k], weight[k] if np.ndim(weight) else weight, w.tmp[k], w.tmp2[k])


@OPTIMIZERS.register("schedule_free_adamw", lr=LR, betas=BETAS, eps=NONNEG, weight_decay=NONNEG,
                     warmup_steps=Int(ge=0), r=NONNEG, weight_lr_power=NONNEG)
class ScheduleFreeAdamW(_ScheduleFree):
    """Schedule-Free AdamW, facebookresearch/schedule_free's AdamWScheduleFree (the AlgoPerf self-tuning winner).

    v = b2 v + (1 - b2) g^2;  d = g / (sqrt(v / (1 - b2^t)) + eps), then the Schedule-Free
    y/z updates with beta = b1 (see _ScheduleFree). Evaluated at x. The reference's foreach
    path fuses some multiply-adds; NumPy rounds them apart (float32 rounding).
    """

    def __init__(self, params, lr=0.0025, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, warmup_steps=0, r=0.0,
                 weight_lr_power=2.0):
        self.beta2, self.eps = _hp(betas[1]), _hp(eps)
        super().__init__(params, lr, betas[0], weight_decay, warmup_steps, r, weight_lr_power)

    def init_state(self, p):
        return {**super().init_state(p), "v": np.zeros_like(p)}

    def update(self, p, g, s, w):
        v, d = s["v"], w.gwd
        v *= np.float32(self.beta2)
        v += _scale(np.multiply(g, g, out=w.tmp), 1.0 - self.beta2, w.tmp)
        np.multiply(v, np.float32(1.0 / (1.0 - np.power(self.beta2, self.t))), out=d)
        np.sqrt(d, out=d)
        d += np.float32(self.eps)
        np.divide(g, d, out=d)
        self.descend(p, s["z"], d, w)


@OPTIMIZERS.register("schedule_free_sgd", lr=LR, momentum=Real(gt=0, lt=1), weight_decay=NONNEG,
                     warmup_steps=Int(ge=0), r=NONNEG, weight_lr_power=NONNEG)
class ScheduleFreeSGD(_ScheduleFree):
    """Schedule-Free SGD, facebookresearch/schedule_free's SGDScheduleFree.

    d = g, then the Schedule-Free y/z updates with beta = momentum (see _ScheduleFree).
    """

    def __init__(self, params, lr=1.0, momentum=0.9, weight_decay=0.0, warmup_steps=0, r=0.0, weight_lr_power=2.0):
        super().__init__(params, lr, momentum, weight_decay, warmup_steps, r, weight_lr_power)

    def update(self, p, g, s, w):
        d = w.gwd
        np.copyto(d, g)
        self.descend(p, s["z"], d, w)
