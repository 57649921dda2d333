"""Optimizers that see the model's tensors (layer by layer): LAMB."""

from __future__ import annotations

import numpy as np

from lossbench.engine.optimizers.base import (
    ADAM_FAMILY,
    OPTIMIZERS,
    Optimizer,
    _hp,
    _scale,
)


def tensors(layout, n: int) -> list[slice]:
    """Where each tensor of a flat buffer of n values lies (one slice if no layout)."""
    if layout is None:
        return [slice(0, n)]
    edges = np.cumsum([0] + [int(np.prod(shape)) for _, shape in layout])
    if edges[-1] != n:
        raise ValueError(f"a layout of {edges[-1]} values for a buffer of {n}")
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]


@OPTIMIZERS.register("lamb", **ADAM_FAMILY)
class LAMB(Optimizer):
    """Adam's step scaled per layer by a trust ratio, LAMB (You et al., 2020; cybertronai/pytorch-lamb).

    m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  u = m / (sqrt(v) + eps) + wd p
    per tensor (each layer's weight, each bias): r = min(|p|, 10) / |u| (1 if either is 0)
    p -= lr r u
    As pytorch-lamb: no bias correction (the paper's v3), the weight norm clamped at 10,
    decay inside the trust ratio. Unlike it, a ratio with a zero norm is 1 (as apex's and
    timm's LAMB): pytorch-lamb's 0 would never move a tensor that starts at zero (biases
    under `init: he`); its `adam=True` switch is left out. It needs the model's layout (the
    training loop gives it); over a buffer without one, the whole buffer is one tensor.
    """

    def __init__(self, params, lr=0.001, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0):
        self.beta1, self.beta2, self.eps, self.wd = _hp(betas[0]), _hp(betas[1]), _hp(eps), _hp(weight_decay)
        self.wd_on = bool(np.any(self.wd > 0))  # structural: the base class's branches
        super().__init__(params, lr, 0.0)  # the decay is inside the trust ratio

    def init_state(self, p):
        return {"m": np.zeros_like(p), "v": np.zeros_like(p)}

    def update(self, p, g, s, w):
        m, v, u = s["m"], s["v"], w.gwd
        m *= np.float32(self.beta1)
        m += _scale(g, 1.0 - self.beta1, w.tmp)
        v *= np.float32(self.beta2)
        v += _scale(np.multiply(g, g, out=w.tmp), 1.0 - self.beta2, w.tmp)
        np.sqrt(v, out=u)
        u += np.float32(self.eps)
        np.divide(m, u, out=u)
        if self.wd_on:
            u += _scale(p, self.wd, w.tmp)
        for t in tensors(self.layout, p.shape[-1]):
            pt, ut = p[..., t], u[..., t]
            wn = np.minimum(np.sqrt(np.sum(pt * pt, axis=-1, keepdims=True)), np.float32(10))
            un = np.sqrt(np.sum(ut * ut, axis=-1, keepdims=True))
            ratio = np.where((wn == 0) | (un == 0), np.float32(1), wn / np.where(un == 0, 1, un))
            pt -= np.multiply(ut, np.float32(self._lr) * ratio, out=w.tmp[..., t])
