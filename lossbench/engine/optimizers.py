"""Optimizers with torch.optim's names, defaults and update rules, in float32.

An optimizer owns a list of parameter arrays and updates them in place from a matching
list of gradients; the gradients are never modified. A model hands over its one flat
parameter buffer, so each step is a handful of vectorized operations on one array.
Weight decay is one link shared by every optimizer, as in torch: coupled L2
(g + wd * p) by default, or decoupled (p *= 1 - lr * wd, AdamW) where the optimizer
offers `decoupled_weight_decay`. Updates write into per-parameter scratch arrays
(`out=`) instead of allocating temporaries: for a model-sized buffer a fresh array per
operation costs page faults that made steps markedly slower. What an optimizer remembers
between steps (its state: moments, buffers) is kept apart from those scratch arrays.
The update rule of each is in its docstring, one line per step, with t = step count,
g = gradient (after weight decay), p = parameter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lossbench.errors import ConfigError
from lossbench.registry import Bool, Real, Registry, Seq

OPTIMIZERS = Registry("optimizer", context=("params",))

# Constraints shared by many optimizers (torch.optim's constructor checks).
LR = Real(gt=0)
NONNEG = Real(ge=0)
FLAG = Bool()
BETAS = Seq(Real(ge=0, lt=1), length=2)
ADAM_FAMILY = dict(lr=LR, betas=BETAS, eps=NONNEG, weight_decay=NONNEG)


def _lerp(m: np.ndarray, g: np.ndarray, w: float, tmp: np.ndarray) -> None:
    """m += w (g - m), torch's lerp_: the moving average of the Adam family."""
    np.subtract(g, m, out=tmp)
    tmp *= np.float32(w)
    m += tmp


def _axpy(a: float, x: np.ndarray, y: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out = a * x + y."""
    np.multiply(x, np.float32(a), out=out)
    out += y
    return out


def _scale(x: np.ndarray, a: float, out: np.ndarray) -> np.ndarray:
    """out = a * x."""
    return np.multiply(x, np.float32(a), out=out)


def _descend(p: np.ndarray, lr: float, d: np.ndarray, tmp: np.ndarray) -> None:
    """p -= lr * d."""
    np.multiply(d, np.float32(lr), out=tmp)
    p -= tmp


@dataclass
class Scratch:
    """Per-parameter work arrays, overwritten by every step (never state)."""

    tmp: np.ndarray
    tmp2: np.ndarray
    gwd: np.ndarray  # the gradient with coupled weight decay added


class Optimizer:
    """Updates a list of float parameter arrays in place from matching gradients.

    A subclass implements `init_state(p)` (what it remembers for one parameter: a dict
    of arrays, made once) and `update(p, g, state, scratch)` (one step for one
    parameter, in place, using scratch arrays rather than temporaries). It may read
    `self.t` (the step count, already incremented) and `self.lr` (which a schedule may
    change between steps). The base class checks the gradients and applies weight decay
    first. `g` must not be modified: it may be the model's gradient buffer. Hyperparameter
    ranges are the registry line's constraints; relations between them are checked in
    the constructor, in the message form of lossbench.registry.
    """

    def __init__(self, params: Sequence[np.ndarray], lr: float, weight_decay: float = 0.0,
                 decoupled_weight_decay: bool = False):
        if isinstance(params, np.ndarray):  # list(array) would silently make one parameter per row
            raise TypeError("optimizer params must be a list of float NumPy arrays, not one array: wrap it in [ ]")
        self.params = list(params)
        for p in self.params:
            if not isinstance(p, np.ndarray) or p.dtype.kind != "f":
                raise TypeError("optimizer params must be float NumPy arrays (updated in place)")
        self.lr = float(lr)  # a schedule may change it between steps
        self.weight_decay = float(weight_decay)
        self.decoupled = bool(decoupled_weight_decay)
        self.t = 0
        self.state = [self.init_state(p) for p in self.params]
        self.scratch = [Scratch(np.empty_like(p), np.empty_like(p), np.empty_like(p)) for p in self.params]

    def init_state(self, p: np.ndarray) -> dict:
        return {}

    def copies(self) -> int:
        """Arrays the size of the parameters this optimizer holds (state and scratch): its
        memory is this many times the model's."""
        return len(self.state[0]) + len(vars(self.scratch[0])) if self.params else 0

    def step(self, grads: Sequence[np.ndarray]) -> None:
        if len(grads) != len(self.params):
            raise ValueError(f"expected {len(self.params)} gradients, got {len(grads)}")
        for i, (p, g) in enumerate(zip(self.params, grads)):
            if np.shape(g) != p.shape:
                raise ValueError(f"gradient {i} has shape {np.shape(g)}, its parameter {p.shape}")
        self.t += 1
        for p, g, s, w in zip(self.params, grads, self.state, self.scratch):
            if self.weight_decay and self.decoupled:  # shrink the weights, not the gradient
                p *= np.float32(1.0 - self.lr * self.weight_decay)
            elif self.weight_decay:
                g = _axpy(self.weight_decay, p, g, w.gwd)
            self.update(p, g, s, w)

    def update(self, p: np.ndarray, g: np.ndarray, s: dict, w: Scratch) -> None:
        raise NotImplementedError


@OPTIMIZERS.register("sgd", lr=LR, momentum=NONNEG, dampening=Real(), weight_decay=NONNEG, nesterov=FLAG)
class SGD(Optimizer):
    """Stochastic gradient descent, optionally with (Nesterov) momentum, torch.optim.SGD.

    b = g on the first step, then b = momentum b + (1 - dampening) g  (with momentum)
    d = g + momentum b if nesterov else b  (d = g without momentum)
    p -= lr d
    """

    def __init__(self, params, lr=0.001, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ConfigError(f"optimizer.nesterov: needs momentum > 0 and dampening = 0, got momentum={momentum} "
                              f"and dampening={dampening}")
        self.momentum, self.dampening, self.nesterov = float(momentum), float(dampening), bool(nesterov)
        super().__init__(params, lr, weight_decay)

    def copies(self) -> int:
        lazy = self.momentum > 0 and "buf" not in self.state[0]  # the momentum buffer, made on the first step
        return super().copies() + lazy

    def update(self, p, g, s, w):
        if self.momentum:
            if "buf" not in s:
                s["buf"] = g.copy()  # torch: the first step's buffer is the gradient itself
            else:
                buf = s["buf"]
                buf *= np.float32(self.momentum)
                buf += _scale(g, 1.0 - self.dampening, w.tmp) if self.dampening else g
            g = _axpy(self.momentum, s["buf"], g, w.tmp) if self.nesterov else s["buf"]
        _descend(p, self.lr, g, w.tmp2)


# Aliases: one visible difference each. gd's difference is in the training loop, which
# gives it the whole training set as its one batch.
OPTIMIZERS.alias("gd", "sgd", "Full-batch gradient descent: sgd with the whole training set as each step's batch.")
OPTIMIZERS.alias("momentum", "sgd", "SGD with heavy-ball momentum, 0.9 unless set.", momentum=0.9)


@OPTIMIZERS.register("rmsprop", lr=LR, alpha=Real(ge=0, le=1), eps=NONNEG, weight_decay=NONNEG, momentum=NONNEG,
                     centered=FLAG)
class RMSprop(Optimizer):
    """Gradients divided by a running root mean square, torch.optim.RMSprop (Hinton, Lecture 6e).

    v = alpha v + (1-alpha) g^2
    centered: m = alpha m + (1-alpha) g, v' = v - m^2 (else v' = v)
    d = g / (sqrt(v') + eps)
    with momentum: b = momentum b + d, p -= lr b; else p -= lr d
    """

    def __init__(self, params, lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
        self.alpha, self.eps, self.momentum, self.centered = float(alpha), float(eps), float(momentum), bool(centered)
        super().__init__(params, lr, weight_decay)

    def init_state(self, p):
        s = {"v": np.zeros_like(p)}
        if self.centered:
            s["m"] = np.zeros_like(p)
        if self.momentum:
            s["buf"] = np.zeros_like(p)
        return s

    def update(self, p, g, s, w):
        v, tmp, avg = s["v"], w.tmp, w.tmp2
        v *= np.float32(self.alpha)
        np.multiply(g, g, out=tmp)
        v += _scale(tmp, 1.0 - self.alpha, tmp)
        if self.centered:
            m = s["m"]
            _lerp(m, g, 1.0 - self.alpha, tmp)
            np.multiply(m, m, out=tmp)
            np.subtract(v, tmp, out=avg)
            np.sqrt(avg, out=avg)
        else:
            np.sqrt(v, out=avg)
        avg += np.float32(self.eps)
        np.divide(g, avg, out=avg)
        if self.momentum:
            buf = s["buf"]
            buf *= np.float32(self.momentum)
            buf += avg
            _descend(p, self.lr, buf, tmp)
        else:
            _descend(p, self.lr, avg, tmp)


@OPTIMIZERS.register("adagrad", lr=LR, lr_decay=NONNEG, weight_decay=NONNEG, initial_accumulator_value=NONNEG,
                     eps=NONNEG)
class Adagrad(Optimizer):
    """Per-coordinate steps that shrink with the summed squared gradients, torch.optim.Adagrad (Duchi et al., 2011).

    s += g^2
    p -= lr / (1 + (t-1) lr_decay) * g / (sqrt(s) + eps)
    """

    def __init__(self, params, lr=0.01, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10):
        self.lr_decay, self.init_acc, self.eps = float(lr_decay), float(initial_accumulator_value), float(eps)
        super().__init__(params, lr, weight_decay)

    def init_state(self, p):
        return {"sum": np.full_like(p, self.init_acc)}

    def update(self, p, g, s, w):
        clr = self.lr / (1.0 + (self.t - 1) * self.lr_decay)
        std, tmp = w.tmp, w.tmp2
        np.multiply(g, g, out=tmp)
        s["sum"] += tmp
        np.sqrt(s["sum"], out=std)
        std += np.float32(self.eps)
        np.divide(g, std, out=std)
        _descend(p, clr, std, tmp)


@OPTIMIZERS.register("adadelta", lr=LR, rho=Real(ge=0, le=1), eps=NONNEG, weight_decay=NONNEG)
class Adadelta(Optimizer):
    """Steps scaled by the ratio of running RMS of updates and gradients, torch.optim.Adadelta (Zeiler, 2012).

    v = rho v + (1-rho) g^2
    d = sqrt(u + eps) / sqrt(v + eps) * g
    u = rho u + (1-rho) d^2
    p -= lr d
    """

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0):
        self.rho, self.eps = float(rho), float(eps)
        super().__init__(params, lr, weight_decay)

    def init_state(self, p):
        return {"v": np.zeros_like(p), "u": np.zeros_like(p)}

    def update(self, p, g, s, w):
        rho, eps = np.float32(self.rho), np.float32(self.eps)
        v, u, d, tmp = s["v"], s["u"], w.tmp, w.tmp2
        v *= rho
        np.multiply(g, g, out=tmp)
        v += _scale(tmp, 1.0 - self.rho, tmp)
        np.add(u, eps, out=d)
        np.sqrt(d, out=d)
        np.add(v, eps, out=tmp)
        np.sqrt(tmp, out=tmp)
        d /= tmp
        d *= g
        u *= rho
        np.multiply(d, d, out=tmp)
        u += _scale(tmp, 1.0 - self.rho, tmp)
        _descend(p, self.lr, d, tmp)


class _Moments(Optimizer):
    """The Adam family's first and second moment estimates (not registered itself).

    The moments are kept unnormalized, M = m / (1-b1) and V = v / (1-b2), so their
    updates are M = b1 M + g and V = b2 V + g^2: two and three array passes instead of
    three and four. Each rule folds the constant factors back into its scalars; the
    result is torch's formula, equal up to float32 rounding (see the parity tests).
    """

    def __init__(self, params, lr, betas, eps, weight_decay, decoupled_weight_decay=False):
        self.beta1, self.beta2 = float(betas[0]), float(betas[1])
        self.eps = float(eps)
        super().__init__(params, lr, weight_decay, decoupled_weight_decay)

    def init_state(self, p):
        return {"M": np.zeros_like(p), "V": np.zeros_like(p)}

    def moments(self, g, s, w):
        M, V, tmp = s["M"], s["V"], w.tmp
        M *= np.float32(self.beta1)
        M += g
        V *= np.float32(self.beta2)
        V += np.multiply(g, g, out=tmp)
        return M, V

    def scaled_root(self, V, c: float, add: float, out):
        """out = sqrt(V) * c + add."""
        np.sqrt(V, out=out)
        out *= np.float32(c)
        out += np.float32(add)
        return out


@OPTIMIZERS.register("adam", **ADAM_FAMILY, amsgrad=FLAG, decoupled_weight_decay=FLAG)
class Adam(_Moments):
    """Adaptive moment estimation, torch.optim.Adam (Kingma & Ba, 2015).

    m = b1 m + (1-b1) g
    v = b2 v + (1-b2) g^2  (amsgrad: v = the maximum over steps)
    p -= lr / (1-b1^t) * m / (sqrt(v) / sqrt(1-b2^t) + eps)
    decoupled_weight_decay=True is AdamW.
    """

    def __init__(self, params, lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
                 decoupled_weight_decay=False):
        self.amsgrad = bool(amsgrad)
        super().__init__(params, lr, betas, eps, weight_decay, decoupled_weight_decay)

    def init_state(self, p):
        s = super().init_state(p)
        if self.amsgrad:
            s["Vmax"] = np.zeros_like(p)
        return s

    def update(self, p, g, s, w):
        M, V = self.moments(g, s, w)
        if self.amsgrad:
            np.maximum(s["Vmax"], V, out=s["Vmax"])
            V = s["Vmax"]
        b1, b2, t = self.beta1, self.beta2, self.t
        step = self.lr * (1.0 - b1) / (1.0 - b1**t)
        if step == 0.0:  # lr reached 0 (e.g. the end of a cosine schedule): nothing moves
            return
        # p -= step * M / (sqrt((1-b2) V / (1-b2^t)) + eps), with step folded into the denominator
        denom = self.scaled_root(V, math.sqrt((1.0 - b2) / (1.0 - b2**t)) / step, self.eps / step, w.tmp)
        p -= np.divide(M, denom, out=denom)


@OPTIMIZERS.register("adamw", **ADAM_FAMILY, amsgrad=FLAG)
class AdamW(Adam):
    """Adam with decoupled weight decay, torch.optim.AdamW (Loshchilov & Hutter, 2019).

    p *= 1 - lr wd, then the Adam step; weight_decay is 0.01 unless set
    """

    def __init__(self, params, lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, amsgrad=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, decoupled_weight_decay=True)


@OPTIMIZERS.register("adamax", **ADAM_FAMILY)
class Adamax(_Moments):
    """Adam with the infinity norm in place of the second moment, torch.optim.Adamax (Kingma & Ba, 2015, sec. 7).

    m = b1 m + (1-b1) g
    u = max(b2 u, |g| + eps)
    p -= lr / (1-b1^t) * m / u
    """

    def __init__(self, params, lr=0.002, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr, betas, eps, weight_decay)

    def init_state(self, p):
        return {"M": np.zeros_like(p), "u": np.zeros_like(p)}

    def update(self, p, g, s, w):
        M, u, tmp = s["M"], s["u"], w.tmp
        M *= np.float32(self.beta1)
        M += g
        u *= np.float32(self.beta2)
        np.abs(g, out=tmp)
        tmp += np.float32(self.eps)
        np.maximum(u, tmp, out=u)
        np.divide(M, u, out=tmp)
        _descend(p, self.lr * (1.0 - self.beta1) / (1.0 - self.beta1**self.t), tmp, tmp)


@OPTIMIZERS.register("nadam", **ADAM_FAMILY, momentum_decay=NONNEG, decoupled_weight_decay=FLAG)
class NAdam(_Moments):
    """Adam with Nesterov momentum, torch.optim.NAdam (Dozat, 2016).

    mu_t = b1 (1 - 0.5 * 0.96^(t * momentum_decay))
    m, v as Adam; d = sqrt(v / (1-b2^t)) + eps
    p -= lr (1-mu_t) / (1 - prod mu) * g / d + lr mu_{t+1} / (1 - prod mu * mu_{t+1}) * m / d
    """

    def __init__(self, params, lr=0.002, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, momentum_decay=0.004,
                 decoupled_weight_decay=False):
        self.momentum_decay = float(momentum_decay)
        self.mu_product = 1.0
        super().__init__(params, lr, betas, eps, weight_decay, decoupled_weight_decay)

    def step(self, grads):
        t = self.t + 1
        self.mu = self.beta1 * (1.0 - 0.5 * 0.96 ** (t * self.momentum_decay))
        self.mu_next = self.beta1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * self.momentum_decay))
        self.mu_product *= self.mu
        super().step(grads)

    def update(self, p, g, s, w):
        M, V = self.moments(g, s, w)
        denom, tmp = self.scaled_root(V, math.sqrt((1.0 - self.beta2) / (1.0 - self.beta2**self.t)), self.eps,
                                      w.tmp), w.tmp2
        np.divide(g, denom, out=tmp)
        _descend(p, self.lr * (1.0 - self.mu) / (1.0 - self.mu_product), tmp, tmp)
        np.divide(M, denom, out=tmp)
        mu_next = self.mu_next
        _descend(p, self.lr * (1.0 - self.beta1) * mu_next / (1.0 - self.mu_product * mu_next), tmp, tmp)


@OPTIMIZERS.register("radam", **ADAM_FAMILY, decoupled_weight_decay=FLAG)
class RAdam(_Moments):
    """Rectified Adam: plain momentum steps until the adaptive term's variance is tractable, torch.optim.RAdam.

    m, v as Adam; rho_t = rho_inf - 2 t b2^t / (1 - b2^t), rho_inf = 2 / (1-b2) - 1
    rho_t > 5: p -= lr / (1-b1^t) * m * r_t * sqrt(1-b2^t) / (sqrt(v) + eps), r_t the rectification
    else: p -= lr / (1-b1^t) * m   (Liu et al., 2020)
    """

    def __init__(self, params, lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 decoupled_weight_decay=False):
        super().__init__(params, lr, betas, eps, weight_decay, decoupled_weight_decay)

    def update(self, p, g, s, w):
        M, V = self.moments(g, s, w)
        t, b2 = self.t, self.beta2
        bc2 = 1.0 - b2**t
        step = self.lr * (1.0 - self.beta1) / (1.0 - self.beta1**t)  # lr * m_hat = step * M
        rho_inf = 2.0 / (1.0 - b2) - 1.0
        rho_t = rho_inf - 2.0 * t * b2**t / bc2
        tmp = w.tmp
        if rho_t > 5.0 and step != 0.0:
            rect = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
            # p -= step * M * rect * sqrt(bc2) / (sqrt(v) + eps), with sqrt(v) = sqrt((1-b2) V)
            k = step * rect * math.sqrt(bc2)
            denom = self.scaled_root(V, math.sqrt(1.0 - b2) / k, self.eps / k, tmp)
            p -= np.divide(M, denom, out=denom)
        else:
            _descend(p, step, M, tmp)


def clip_grad_norm(grads: Sequence[np.ndarray], max_norm: float) -> float:
    """Scale the gradients in place so their global L2 norm is at most max_norm;
    returns the norm before clipping. torch.nn.utils.clip_grad_norm_."""
    total = math.sqrt(sum(float(np.dot(g.ravel(), g.ravel())) for g in grads))
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        for g in grads:
            g *= np.float32(coef)
    return total


def build(name: str, params: Sequence[np.ndarray], /, **hyperparams) -> Optimizer:
    """`optimizers.build("adam", [w, b], lr=1e-3)`: an optimizer by its registered name."""
    return OPTIMIZERS.build(name, params, **hyperparams)
