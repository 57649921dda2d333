"""The Adam family: Adam, AdamW, Adamax, NAdam, RAdam (torch.optim), and Lion."""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np

from lossbench.engine.optimizers.base import (
    ADAM_FAMILY,
    BETAS,
    FLAG,
    LR,
    NONNEG,
    OPTIMIZERS,
    Optimizer,
    _all,
    _axpy,
    _descend,
    _hp,
    _scale,
)


class _Moments(Optimizer):
    """The Adam family's first and second moment estimates (not registered itself).

    The moments are kept unnormalized, M = m / (1-b1) and V = v / (1-b2), so their
    updates are M = b1 M + g and V = b2 V + g^2: two and three array passes instead of
    three and four. Each rule folds the constant factors back into its scalars; the
    result is torch's formula, equal up to float32 rounding (see the parity tests).
    Powers of the betas are np.power on the float64 arrays, never Python's `**` on one
    row's number: the same function for a row alone and in a group.
    """

    def __init__(self, params, lr, betas, eps, weight_decay, decoupled_weight_decay=False):
        self.beta1, self.beta2 = _hp(betas[0]), _hp(betas[1])
        self.c1, self.c2 = 1.0 - self.beta1, 1.0 - self.beta2  # the same float64 as computed each step
        self.eps = _hp(eps)
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

    def lr_step(self):
        """lr / (1-b1^t) * (1-b1): the step on the unnormalized M (float64, per row)."""
        return self._lr * self.c1 / (1.0 - np.power(self.beta1, self.t))

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
        step = self.lr_step()
        # lr reached 0 in some rows (the end of a cosine schedule): they must not move
        still = None if _all(step) else step == 0.0
        if still is not None:
            if _all(still):
                return
            step = np.where(still, 1.0, step)  # a finite stand-in in the rows that do not move
        # p -= step * M / (sqrt((1-b2) V / (1-b2^t)) + eps), with step folded into the denominator
        c = np.sqrt(self.c2 / (1.0 - np.power(self.beta2, self.t))) / step
        denom = self.scaled_root(V, c, self.eps / step, w.tmp)
        np.divide(M, denom, out=denom)
        if still is not None:
            np.copyto(denom, 0.0, where=still)  # p - 0 is p, bit for bit
        p -= denom


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
        _descend(p, self.lr_step(), tmp, tmp)


@OPTIMIZERS.register("nadam", **ADAM_FAMILY, momentum_decay=NONNEG, decoupled_weight_decay=FLAG)
class NAdam(_Moments):
    """Adam with Nesterov momentum, torch.optim.NAdam (Dozat, 2016).

    mu_t = b1 (1 - 0.5 * 0.96^(t * momentum_decay))
    m, v as Adam; d = sqrt(v / (1-b2^t)) + eps
    p -= lr (1-mu_t) / (1 - prod mu) * g / d + lr mu_{t+1} / (1 - prod mu * mu_{t+1}) * m / d
    """

    def __init__(self, params, lr=0.002, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, momentum_decay=0.004,
                 decoupled_weight_decay=False):
        self.momentum_decay = _hp(momentum_decay)
        super().__init__(params, lr, betas, eps, weight_decay, decoupled_weight_decay)
        self.mu_product = _hp(np.ones(np.shape(self.beta1)))  # per row, updated in place (see Optimizer)

    def begin_step(self):
        t = self.t
        self.mu = self.beta1 * (1.0 - 0.5 * np.power(0.96, t * self.momentum_decay))
        self.mu_next = self.beta1 * (1.0 - 0.5 * np.power(0.96, (t + 1) * self.momentum_decay))
        self.mu_product *= self.mu

    def update(self, p, g, s, w):
        M, V = self.moments(g, s, w)
        bc2 = 1.0 - np.power(self.beta2, self.t)
        denom, tmp = self.scaled_root(V, np.sqrt(self.c2 / bc2), self.eps, w.tmp), w.tmp2
        np.divide(g, denom, out=tmp)
        _descend(p, self._lr * (1.0 - self.mu) / (1.0 - self.mu_product), tmp, tmp)
        np.divide(M, denom, out=tmp)
        mu_next = self.mu_next
        _descend(p, self._lr * self.c1 * mu_next / (1.0 - self.mu_product * mu_next), tmp, tmp)


@OPTIMIZERS.register("radam", **ADAM_FAMILY, decoupled_weight_decay=FLAG)
class RAdam(_Moments):
    """Rectified Adam: plain momentum steps until the adaptive term's variance is tractable, torch.optim.RAdam.

    m, v as Adam; rho_t = rho_inf - 2 t b2^t / (1 - b2^t), rho_inf = 2 / (1-b2) - 1
    rho_t > 5: p -= lr / (1-b1^t) * m * r_t * sqrt(1-b2^t) / (sqrt(v) + eps), r_t the rectification
    else: p -= lr / (1-b1^t) * m   (Liu et al., 2020)
    Rows of a group may be on either side of rho_t = 5 (their beta2 differ): each row
    gets the update of its own branch.
    """

    def __init__(self, params, lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 decoupled_weight_decay=False):
        super().__init__(params, lr, betas, eps, weight_decay, decoupled_weight_decay)
        # constants of the rectification, the float64 values each step would compute
        self.rho_inf = 2.0 / self.c2 - 1.0
        self.rho_den = (self.rho_inf - 4) * (self.rho_inf - 2)
        self.root_c2 = np.sqrt(self.c2)

    def update(self, p, g, s, w):
        M, V = self.moments(g, s, w)
        t, b2t = self.t, np.power(self.beta2, self.t)
        bc2 = 1.0 - b2t
        step = self.lr_step()  # lr * m_hat = step * M
        rho_t = self.rho_inf - 2.0 * t * b2t / bc2
        rect = (rho_t > 5.0) & (step != 0.0)
        n_rect = np.count_nonzero(rect)
        if n_rect == 0:
            _descend(p, step, M, w.tmp)
            return
        mixed = n_rect < np.size(rect)
        # rows not rectified compute garbage here (a root of a negative), replaced below
        with np.errstate(invalid="ignore", divide="ignore") if mixed else nullcontext():
            r = np.sqrt((rho_t - 4) * (rho_t - 2) * self.rho_inf / (self.rho_den * rho_t))
            # p -= step * M * r * sqrt(bc2) / (sqrt(v) + eps), with sqrt(v) = sqrt((1-b2) V)
            k = step * r * np.sqrt(bc2)
            denom = self.scaled_root(V, self.root_c2 / k, self.eps / k, w.tmp)
        np.divide(M, denom, out=denom)
        if mixed:  # the plain momentum step in the other rows, as _descend computes it
            np.copyto(denom, np.multiply(M, np.float32(step), out=w.tmp2), where=~rect)
        p -= denom


@OPTIMIZERS.register("lion", lr=LR, betas=BETAS, weight_decay=NONNEG)
class Lion(Optimizer):
    """The sign of an interpolated momentum, Lion (Chen et al., 2023; lucidrains/lion-pytorch).

    p *= 1 - lr wd  (decoupled weight decay, as AdamW)
    p -= lr sign(b1 m + (1 - b1) g)
    m = b2 m + (1 - b2) g
    No torch namesake: follows lion-pytorch's update (without its Triton kernel); its
    `add(..., alpha=1-b1)` may fuse a multiply-add that NumPy rounds twice, which can only
    flip a sign where the interpolation is within rounding of 0.
    """

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0):
        self.beta1, self.beta2 = _hp(betas[0]), _hp(betas[1])
        super().__init__(params, lr, weight_decay, decoupled_weight_decay=True)

    def init_state(self, p):
        return {"m": np.zeros_like(p)}

    def update(self, p, g, s, w):
        m, c = s["m"], w.tmp
        _axpy(1.0 - self.beta1, g, np.multiply(m, np.float32(self.beta1), out=w.tmp2), c)
        np.sign(c, out=c)
        _descend(p, self._lr, c, w.tmp2)
        m *= np.float32(self.beta2)
        m += _scale(g, 1.0 - self.beta2, w.tmp)
