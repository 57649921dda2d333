"""Optimizers with torch.optim's names, defaults and update rules, in float32.

An optimizer owns a list of parameter arrays and updates them in place from a matching
list of gradients; the gradients are never modified. A model hands over its one flat
parameter buffer, so each step is a handful of vectorized operations on one array.
Weight decay is one link shared by every optimizer, as in torch: coupled L2
(g + wd * p) by default, or decoupled (p *= 1 - lr * wd, AdamW) where the optimizer
offers `decoupled_weight_decay`. Updates write into per-parameter scratch arrays
(`out=`) instead of allocating temporaries: for a model-sized buffer a fresh array per
operation costs page faults that made steps markedly slower. The update rule of each is in its docstring, with
t = step count, g = gradient (after weight decay), p = parameter.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from lossbench.errors import ConfigError
from lossbench.registry import Registry

OPTIMIZERS = Registry("optimizer")


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def _lerp(m: np.ndarray, g: np.ndarray, w: float, tmp: np.ndarray) -> None:
    """m += w (g - m), torch's lerp_: the moving average of the Adam family."""
    np.subtract(g, m, out=tmp)
    tmp *= np.float32(w)
    m += tmp


def _check_betas(betas) -> tuple[float, float]:
    _check(
        isinstance(betas, (list, tuple)) and len(betas) == 2,
        f"optimizer.betas: must be a pair [beta1, beta2], got {betas!r}",
    )
    for i, b in enumerate(betas):
        _check(0.0 <= b < 1.0, f"optimizer.betas: invalid beta parameter at index {i}: {b} (must be in [0, 1))")
    return float(betas[0]), float(betas[1])


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


class Optimizer:
    def __init__(self, params: Sequence[np.ndarray], lr: float, weight_decay: float = 0.0,
                 decoupled_weight_decay: bool = False):
        _check(lr > 0, f"optimizer.lr: must be > 0, got {lr}")
        _check(weight_decay >= 0, f"optimizer.weight_decay: must be >= 0, got {weight_decay}")
        self.params = list(params)
        for p in self.params:
            if not isinstance(p, np.ndarray) or p.dtype.kind != "f":
                raise TypeError("optimizer params must be float NumPy arrays (updated in place)")
        self.lr = float(lr)  # a schedule may change it between steps
        self.weight_decay = float(weight_decay)
        self.decoupled = bool(decoupled_weight_decay)
        self.t = 0
        self.state = [{**self.init_state(p), "tmp": np.empty_like(p), "tmp2": np.empty_like(p),
                       "gwd": np.empty_like(p)} for p in self.params]

    def init_state(self, p: np.ndarray) -> dict:
        return {}

    def step(self, grads: Sequence[np.ndarray]) -> None:
        if len(grads) != len(self.params):
            raise ValueError(f"expected {len(self.params)} gradients, got {len(grads)}")
        for i, (p, g) in enumerate(zip(self.params, grads)):
            if np.shape(g) != p.shape:
                raise ValueError(f"gradient {i} has shape {np.shape(g)}, its parameter {p.shape}")
        self.t += 1
        for p, g, s in zip(self.params, grads, self.state):
            if self.weight_decay and self.decoupled:  # shrink the weights, not the gradient
                p *= np.float32(1.0 - self.lr * self.weight_decay)
            elif self.weight_decay:
                g = _axpy(self.weight_decay, p, g, s["gwd"])
            self.update(p, g, s)

    def update(self, p: np.ndarray, g: np.ndarray, s: dict) -> None:
        raise NotImplementedError


@OPTIMIZERS.register("sgd")
class SGD(Optimizer):
    """b = g on the first step, then b = momentum b + (1 - dampening) g;
    p -= lr (g + momentum b if nesterov else b). torch.optim.SGD."""

    def __init__(self, params, lr=0.001, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        _check(momentum >= 0, f"optimizer.momentum: must be >= 0, got {momentum}")
        _check(not nesterov or (momentum > 0 and dampening == 0),
               "optimizer.nesterov needs momentum > 0 and dampening = 0")
        self.momentum, self.dampening, self.nesterov = float(momentum), float(dampening), bool(nesterov)
        super().__init__(params, lr, weight_decay)

    def update(self, p, g, s):
        if self.momentum:
            if "buf" not in s:
                s["buf"] = g.copy()  # torch: the first step's buffer is the gradient itself
            else:
                buf = s["buf"]
                buf *= np.float32(self.momentum)
                buf += _scale(g, 1.0 - self.dampening, s["tmp"]) if self.dampening else g
            g = _axpy(self.momentum, s["buf"], g, s["tmp"]) if self.nesterov else s["buf"]
        _descend(p, self.lr, g, s["tmp2"])


# gd is plain SGD; the training loop gives it the full batch.
OPTIMIZERS.register("gd", type("GD", (SGD,), {"__doc__": "Full-batch gradient descent: sgd on the whole training set."}))


@OPTIMIZERS.register("momentum")
class Momentum(SGD):
    """SGD with momentum 0.9 unless set (heavy ball)."""

    def __init__(self, params, lr=0.001, momentum=0.9, dampening=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(params, lr, momentum, dampening, weight_decay, nesterov)


@OPTIMIZERS.register("rmsprop")
class RMSprop(Optimizer):
    """v = alpha v + (1-alpha) g^2; centered: m = alpha m + (1-alpha) g, v' = v - m^2;
    d = g / (sqrt(v') + eps); with momentum b = momentum b + d, p -= lr b; else p -= lr d.
    torch.optim.RMSprop (Hinton, Lecture 6e)."""

    def __init__(self, params, lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
        _check(0.0 <= alpha <= 1.0, f"optimizer.alpha: must be in [0, 1], got {alpha}")
        _check(eps >= 0, f"optimizer.eps: must be >= 0, got {eps}")
        _check(momentum >= 0, f"optimizer.momentum: must be >= 0, got {momentum}")
        self.alpha, self.eps, self.momentum, self.centered = float(alpha), float(eps), float(momentum), bool(centered)
        super().__init__(params, lr, weight_decay)

    def init_state(self, p):
        s = {"v": np.zeros_like(p)}
        if self.centered:
            s["m"] = np.zeros_like(p)
        if self.momentum:
            s["buf"] = np.zeros_like(p)
        return s

    def update(self, p, g, s):
        v, tmp, avg = s["v"], s["tmp"], s["tmp2"]
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


@OPTIMIZERS.register("adagrad")
class Adagrad(Optimizer):
    """s += g^2; p -= lr / (1 + (t-1) lr_decay) * g / (sqrt(s) + eps).
    torch.optim.Adagrad (Duchi et al., 2011)."""

    def __init__(self, params, lr=0.01, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10):
        _check(lr_decay >= 0, f"optimizer.lr_decay: must be >= 0, got {lr_decay}")
        _check(initial_accumulator_value >= 0,
               f"optimizer.initial_accumulator_value: must be >= 0, got {initial_accumulator_value}")
        _check(eps >= 0, f"optimizer.eps: must be >= 0, got {eps}")
        self.lr_decay, self.init_acc, self.eps = float(lr_decay), float(initial_accumulator_value), float(eps)
        super().__init__(params, lr, weight_decay)

    def init_state(self, p):
        return {"sum": np.full_like(p, self.init_acc)}

    def update(self, p, g, s):
        clr = self.lr / (1.0 + (self.t - 1) * self.lr_decay)
        std, tmp = s["tmp"], s["tmp2"]
        np.multiply(g, g, out=tmp)
        s["sum"] += tmp
        np.sqrt(s["sum"], out=std)
        std += np.float32(self.eps)
        np.divide(g, std, out=std)
        _descend(p, clr, std, tmp)


@OPTIMIZERS.register("adadelta")
class Adadelta(Optimizer):
    """v = rho v + (1-rho) g^2; d = sqrt(u + eps) / sqrt(v + eps) * g;
    u = rho u + (1-rho) d^2; p -= lr d. torch.optim.Adadelta (Zeiler, 2012)."""

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0):
        _check(0.0 <= rho <= 1.0, f"optimizer.rho: must be in [0, 1], got {rho}")
        _check(eps >= 0, f"optimizer.eps: must be >= 0, got {eps}")
        self.rho, self.eps = float(rho), float(eps)
        super().__init__(params, lr, weight_decay)

    def init_state(self, p):
        return {"v": np.zeros_like(p), "u": np.zeros_like(p)}

    def update(self, p, g, s):
        rho, eps = np.float32(self.rho), np.float32(self.eps)
        v, u, d, tmp = s["v"], s["u"], s["tmp"], s["tmp2"]
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
    """Shared by the Adam family: first and second moment estimates.

    The moments are kept unnormalized, M = m / (1-b1) and V = v / (1-b2), so their
    updates are M = b1 M + g and V = b2 V + g^2: two and three array passes instead of
    three and four. Each rule folds the constant factors back into its scalars; the
    result is torch's formula, equal up to float32 rounding (see the parity tests).
    """

    def __init__(self, params, lr, betas, eps, weight_decay, decoupled_weight_decay=False):
        self.beta1, self.beta2 = _check_betas(betas)
        _check(eps >= 0, f"optimizer.eps: must be >= 0, got {eps}")
        self.eps = float(eps)
        super().__init__(params, lr, weight_decay, decoupled_weight_decay)

    def init_state(self, p):
        return {"M": np.zeros_like(p), "V": np.zeros_like(p)}

    def moments(self, g, s):
        M, V, tmp = s["M"], s["V"], s["tmp"]
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


@OPTIMIZERS.register("adam")
class Adam(_Moments):
    """m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2 (amsgrad: v = max over steps);
    p -= lr / (1-b1^t) * m / (sqrt(v) / sqrt(1-b2^t) + eps). torch.optim.Adam
    (Kingma & Ba, 2015); decoupled_weight_decay=True is AdamW."""

    def __init__(self, params, lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
                 decoupled_weight_decay=False):
        self.amsgrad = bool(amsgrad)
        super().__init__(params, lr, betas, eps, weight_decay, decoupled_weight_decay)

    def init_state(self, p):
        s = super().init_state(p)
        if self.amsgrad:
            s["Vmax"] = np.zeros_like(p)
        return s

    def update(self, p, g, s):
        M, V = self.moments(g, s)
        if self.amsgrad:
            np.maximum(s["Vmax"], V, out=s["Vmax"])
            V = s["Vmax"]
        b1, b2, t = self.beta1, self.beta2, self.t
        step = self.lr * (1.0 - b1) / (1.0 - b1**t)
        if step == 0.0:  # lr reached 0 (e.g. the end of a cosine schedule): nothing moves
            return
        # p -= step * M / (sqrt((1-b2) V / (1-b2^t)) + eps), with step folded into the denominator
        denom = self.scaled_root(V, math.sqrt((1.0 - b2) / (1.0 - b2**t)) / step, self.eps / step, s["tmp"])
        p -= np.divide(M, denom, out=denom)


@OPTIMIZERS.register("adamw")
class AdamW(Adam):
    """Adam with decoupled weight decay: p *= 1 - lr wd before the Adam step.
    torch.optim.AdamW (default weight_decay 0.01)."""

    def __init__(self, params, lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, amsgrad=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, decoupled_weight_decay=True)


@OPTIMIZERS.register("adamax")
class Adamax(_Moments):
    """m = b1 m + (1-b1) g; u = max(b2 u, |g| + eps); p -= lr / (1-b1^t) * m / u.
    torch.optim.Adamax (Kingma & Ba, 2015, section 7)."""

    def __init__(self, params, lr=0.002, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr, betas, eps, weight_decay)

    def init_state(self, p):
        return {"M": np.zeros_like(p), "u": np.zeros_like(p)}

    def update(self, p, g, s):
        M, u, tmp = s["M"], s["u"], s["tmp"]
        M *= np.float32(self.beta1)
        M += g
        u *= np.float32(self.beta2)
        np.abs(g, out=tmp)
        tmp += np.float32(self.eps)
        np.maximum(u, tmp, out=u)
        np.divide(M, u, out=tmp)
        _descend(p, self.lr * (1.0 - self.beta1) / (1.0 - self.beta1**self.t), tmp, tmp)


@OPTIMIZERS.register("nadam")
class NAdam(_Moments):
    """Adam with Nesterov momentum and the momentum schedule
    mu_t = b1 (1 - 0.5 * 0.96^(t * momentum_decay)):
    p -= lr (1-mu_t)/(1-prod mu) g/d + lr mu_{t+1}/(1-prod mu * mu_{t+1}) m/d,
    d = sqrt(v / (1-b2^t)) + eps. torch.optim.NAdam (Dozat, 2016)."""

    def __init__(self, params, lr=0.002, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, momentum_decay=0.004,
                 decoupled_weight_decay=False):
        _check(momentum_decay >= 0, f"optimizer.momentum_decay: must be >= 0, got {momentum_decay}")
        self.momentum_decay = float(momentum_decay)
        self.mu_product = 1.0
        super().__init__(params, lr, betas, eps, weight_decay, decoupled_weight_decay)

    def step(self, grads):
        t = self.t + 1
        self.mu = self.beta1 * (1.0 - 0.5 * 0.96 ** (t * self.momentum_decay))
        self.mu_next = self.beta1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * self.momentum_decay))
        self.mu_product *= self.mu
        super().step(grads)

    def update(self, p, g, s):
        M, V = self.moments(g, s)
        denom, tmp = self.scaled_root(V, math.sqrt((1.0 - self.beta2) / (1.0 - self.beta2**self.t)), self.eps,
                                      s["tmp"]), s["tmp2"]
        np.divide(g, denom, out=tmp)
        _descend(p, self.lr * (1.0 - self.mu) / (1.0 - self.mu_product), tmp, tmp)
        np.divide(M, denom, out=tmp)
        mu_next = self.mu_next
        _descend(p, self.lr * (1.0 - self.beta1) * mu_next / (1.0 - self.mu_product * mu_next), tmp, tmp)


@OPTIMIZERS.register("radam")
class RAdam(_Moments):
    """Adam whose adaptive term is switched on only once the variance of its estimate
    is tractable (rho_t > 5), scaled by the rectification term r_t; before that,
    p -= lr m / (1-b1^t). torch.optim.RAdam (Liu et al., 2020)."""

    def __init__(self, params, lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 decoupled_weight_decay=False):
        super().__init__(params, lr, betas, eps, weight_decay, decoupled_weight_decay)

    def update(self, p, g, s):
        M, V = self.moments(g, s)
        t, b2 = self.t, self.beta2
        bc2 = 1.0 - b2**t
        step = self.lr * (1.0 - self.beta1) / (1.0 - self.beta1**t)  # lr * m_hat = step * M
        rho_inf = 2.0 / (1.0 - b2) - 1.0
        rho_t = rho_inf - 2.0 * t * b2**t / bc2
        tmp = s["tmp"]
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


def build(name: str, params: Sequence[np.ndarray], **hyperparams) -> Optimizer:
    """`optimizers.build("adam", [w, b], lr=1e-3)`: an optimizer by its registered name."""
    return OPTIMIZERS.build(name, params, **hyperparams)
