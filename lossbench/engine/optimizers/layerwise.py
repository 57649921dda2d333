"""Optimizers that see the model's tensors one by one: LAMB (a trust ratio per tensor),
Muon (orthogonalized updates of weight matrices) and Adafactor (a factored second moment
per matrix). Muon and Adafactor are `structured`: they take the tensors as shaped views
in torch's orientation (optimizers.groups makes them), one parameter per tensor."""

from __future__ import annotations

import math

import numpy as np

from lossbench.engine.optimizers.base import (
    ADAM_FAMILY,
    FLAG,
    LR,
    NONNEG,
    OPTIMIZERS,
    Optimizer,
    _hp,
    _lerp_to,
    _per,
    _scale,
)
from lossbench.registry import Choice, Int, Named, Optional, Real, Seq


def tensors(layout, n: int) -> list[slice]:
    """Where each tensor of a flat buffer of n values lies (one slice if no layout)."""
    if layout is None:
        return [slice(0, n)]
    edges = np.cumsum([0] + [int(np.prod(t[1])) for t in layout])
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


def bfloat16(x: np.ndarray) -> np.ndarray:
    """x rounded to bfloat16 (to nearest, ties to even), held in float32: torch's .bfloat16()."""
    return _round_bfloat16(np.array(x, dtype=np.float32, order="C"))


def _round_bfloat16(x: np.ndarray) -> np.ndarray:
    """Round a C-contiguous float32 array to bfloat16 in place (and return it): add
    0x7FFF plus the lowest kept bit (ties to even), then clear the low 16 bits."""
    bits = x.view(np.uint32)
    tie = bits >> np.uint32(16)
    tie &= np.uint32(1)
    tie += np.uint32(0x7FFF)
    bits += tie
    bits &= np.uint32(0xFFFF0000)
    return x


def newton_schulz(g: np.ndarray, a, b, c, steps: int, eps) -> np.ndarray:
    """torch.optim.Muon's _zeropower_via_newtonschulz over the last two axes of g (leading
    axes: stacked runs; a, b, c, eps scalars or broadcastable columns), in bfloat16 as
    torch: every operation's result rounded to bfloat16 where torch's is, the products
    summed in float32. Equal to torch's bit for bit but for the order of those float32
    sums, which torch's GEMM and NumPy's BLAS choose apart: on small matrices the results
    are equal; on a 256 x 784 one about half the entries differ, by at most a few
    bfloat16 steps of the largest (tests/test_parity.py measures it). In-place passes:
    the GEMMs take two thirds of its time, the elementwise work the rest."""
    x = bfloat16(g)
    wide = g.shape[-2] > g.shape[-1]
    if wide:
        x = x.swapaxes(-1, -2)
    norm = bfloat16(np.sqrt(np.sum(np.square(x), axis=(-2, -1), keepdims=True, dtype=np.float32)))
    x = _round_bfloat16(np.divide(x, np.maximum(norm, bfloat16(np.float32(eps)))))  # a new C-order array
    a, b, c = (np.float32(v) for v in (a, b, c))
    ax = np.empty_like(x)
    for _ in range(steps):
        gram = _round_bfloat16(np.matmul(x, x.swapaxes(-1, -2)))
        update = np.matmul(gram, gram)
        update *= c
        gram *= b
        update += gram  # b gram + c gram^2, as torch.addmm(gram, gram, gram, beta=b, alpha=c)
        _round_bfloat16(update)
        np.multiply(x, a, out=ax)
        x = np.matmul(update, x)
        x += ax  # a x + update x, as torch.addmm(x, update, x, beta=a)
        _round_bfloat16(x)
    return x.swapaxes(-1, -2) if wide else x


MUON_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


@OPTIMIZERS.register("muon", lr=LR, weight_decay=NONNEG, momentum=NONNEG, nesterov=FLAG,
                     ns_coefficients=Seq(Real(), length=3), eps=NONNEG, ns_steps=Int(ge=0, le=99),
                     adjust_lr_fn=Optional(Choice("original", "match_rms_adamw")), fallback=Named(OPTIMIZERS))
class Muon(Optimizer):
    """Momentum orthogonalized by Newton-Schulz for weight matrices, torch.optim.Muon (Jordan et al., 2024).

    b = lerp(b, g, 1 - momentum);  u = lerp(g, b, momentum) if nesterov else b
    O = NewtonSchulz(u): ns_steps quintic iterations (a, b, c = ns_coefficients) from u / |u|
    p *= 1 - lr wd;  p -= lr r O, with r = sqrt(max(1, A / B)) (adjust_lr_fn "original",
    the default) or 0.2 sqrt(max(A, B)) ("match_rms_adamw"), for an A x B (out x in) weight
    As torch 2.13's code (not its docstring): the buffer is a lerp, the Newton-Schulz
    iterations run in bfloat16 (emulated, see newton_schulz), decay is decoupled. Only
    matrices: in a model, the tensors that are not (biases, batch norm) go to `fallback`
    (adamw unless set: a name or {name: ..., lr: ...}), and convolution weights are
    flattened to (out, in * kh * kw) matrices, as Keller Jordan's reference does.
    """

    structured = True  # one parameter per tensor, shaped (optimizers.groups hands them)
    matrices = True  # and each a matrix (convolution weights flattened)

    def __init__(self, params, lr=0.001, weight_decay=0.1, momentum=0.95, nesterov=True,
                 ns_coefficients=MUON_COEFFICIENTS, eps=1e-7, ns_steps=5, adjust_lr_fn=None, fallback="adamw"):
        self.momentum, self.nesterov, self.eps = _hp(momentum), bool(nesterov), _hp(eps)
        self.coefficients = tuple(_hp(v) for v in ns_coefficients)
        self.ns_steps = int(np.max(ns_steps))  # one value in a group (see branches)
        self.adjust, self.fallback = adjust_lr_fn, fallback
        super().__init__(_matrices(params, np.ndim(lr) > 0), lr, 0.0)  # decay is decoupled, in update
        self.wd = _hp(weight_decay)
        for p in self.params:
            if p.ndim - self.stacked != 2:
                raise ValueError(f"muon updates matrices, got a parameter of shape {p.shape[self.stacked:]}: in a "
                                 "model its fallback steps the others; with optimizers.build, give muon the "
                                 "matrices and another optimizer the rest")

    @classmethod
    def branches(cls, hp):
        return (hp["ns_steps"],)

    def step(self, grads, rows=None):
        if len(grads) == len(self.params):  # gradients shaped as the tensors given (a convolution's 4-D)
            grads = [np.reshape(g, p.shape) if np.size(g) == p.size else g for g, p in zip(grads, self.params)]
        super().step(grads, rows)

    def init_state(self, p):
        return {"buf": np.zeros_like(p)}

    def ratio(self, p) -> float:
        rows, cols = p.shape[-2:]
        if self.adjust == "match_rms_adamw":
            return 0.2 * math.sqrt(max(rows, cols))
        return math.sqrt(max(1, rows / cols))

    def update(self, p, g, s, w):
        buf, mu = s["buf"], _per(self.momentum, p)
        _lerp_to(buf, g, 1.0 - mu, w.tmp, w.tmp2)
        u = buf
        if self.nesterov:
            u = w.gwd
            np.copyto(u, g)
            _lerp_to(u, buf, mu, w.tmp, w.tmp2)
        o = newton_schulz(u, *(_per(v, p) for v in self.coefficients), self.ns_steps, _per(self.eps, p))
        lr = _per(self._lr, p)
        p *= np.float32(1.0 - lr * _per(self.wd, p))
        np.multiply(o, np.float32(lr * self.ratio(p)), out=w.tmp)
        p -= w.tmp


def _matrices(params, stacked: bool) -> list:
    """Muon's parameters as matrices: a convolution weight (out, in, kh, kw) as the view
    (out, in * kh * kw), as Keller Jordan's reference flattens it (after a leading run
    axis when stacked)."""
    lead = 1 + int(stacked)
    return [np.reshape(p, p.shape[:lead] + (-1,), copy=False) if isinstance(p, np.ndarray) and p.ndim > lead + 1
            else p for p in params]


@OPTIMIZERS.register("adafactor", lr=LR, beta2_decay=Real(le=0), eps=Seq(Optional(Real(ge=0)), length=2),
                     d=Real(ge=1), weight_decay=NONNEG)
class Adafactor(Optimizer):
    """A second moment factored into row and column averages per matrix, torch.optim.Adafactor (Shazeer & Stern, 2018).

    b2_t = 1 - t^beta2_decay;  rho_t = min(lr, 1 / sqrt(t));  alpha = max(eps2, RMS(p)) rho_t
    p *= 1 - lr wd
    matrix (the last two axes): R = lerp(R, mean_cols(g^2), 1 - b2_t), C likewise over rows,
    v = R C / mean(R) (at least eps1); vector: v = lerp(v, g^2, 1 - b2_t)
    u = g / sqrt(max(v, eps1^2));  p -= alpha / max(1, RMS(u) / d) u
    As torch's code: eps1 None is float32's machine epsilon, tensors of more than two axes
    are factored over their last two, no first moment (torch has none).
    """

    structured = True  # one parameter per tensor, shaped (optimizers.groups hands them)

    def __init__(self, params, lr=0.01, beta2_decay=-0.8, eps=(None, 1e-3), d=1.0, weight_decay=0.0):
        self.decay_rate, self.d, self.wd = _hp(beta2_decay), _hp(d), _hp(weight_decay)
        self.eps1 = _hp(np.finfo(np.float32).eps if eps[0] is None else eps[0])
        self.eps2 = _hp(eps[1])
        super().__init__(params, lr, 0.0)  # decay is decoupled, in update

    def init_state(self, p):
        if p.ndim - self.stacked > 1:
            return {"row": np.zeros(p.shape[:-1] + (1,), p.dtype),
                    "col": np.zeros(p.shape[:-2] + (1,) + p.shape[-1:], p.dtype)}
        return {"v": np.zeros_like(p)}

    def update(self, p, g, s, w):
        axes = tuple(range(int(self.stacked), p.ndim))  # one tensor's axes (a row's, stacked)
        size = math.prod(p.shape[a] for a in axes)
        t = float(self.t)
        weight = _per(np.power(t, self.decay_rate), p)
        lr = _per(self._lr, p)
        rms = np.sqrt(np.sum(np.square(p), axis=axes, keepdims=True, dtype=np.float32)).astype(np.float64)
        alpha = np.maximum(_per(self.eps2, p), rms / math.sqrt(size)) * np.minimum(lr, 1.0 / math.sqrt(t))
        p *= np.float32(1.0 - lr * _per(self.wd, p))
        eps1 = _per(self.eps1, p)
        if "row" in s:
            row, col = s["row"], s["col"]
            mean_row = np.square(np.sqrt(np.sum(np.square(g), axis=-1, keepdims=True))) / np.float32(g.shape[-1])
            _lerp_to(row, mean_row, weight, np.empty_like(row), np.empty_like(row))
            mean_col = np.square(np.sqrt(np.sum(np.square(g), axis=-2, keepdims=True))) / np.float32(g.shape[-2])
            _lerp_to(col, mean_col, weight, np.empty_like(col), np.empty_like(col))
            v = np.matmul(row, col, out=w.tmp)
            v /= np.maximum(np.mean(row, axis=-2, keepdims=True), np.float32(eps1))
        else:
            _lerp_to(s["v"], np.multiply(g, g, out=w.tmp2), weight, w.tmp, w.gwd)
            v = w.tmp
            np.copyto(v, s["v"])
        np.maximum(v, np.float32(eps1 * eps1), out=v)
        np.sqrt(v, out=v)
        u = np.divide(g, v, out=v)
        urms = np.sqrt(np.sum(np.square(u), axis=axes, keepdims=True, dtype=np.float32)).astype(np.float64)
        denom = np.maximum(1.0, urms / (math.sqrt(size) * _per(self.d, p)))
        u *= np.float32(alpha / denom)
        p -= u
