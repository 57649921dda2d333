"""SGD (and its aliases), RMSprop, Adagrad, Adadelta, Rprop and ASGD: torch.optim's classics."""

from __future__ import annotations

import numpy as np

from lossbench.engine.optimizers.base import (
    FLAG,
    LR,
    NONNEG,
    OPTIMIZERS,
    Optimizer,
    _all,
    _axpy,
    _descend,
    _hp,
    _lerp,
    _scale,
)
from lossbench.errors import ConfigError
from lossbench.registry import Real, Seq


@OPTIMIZERS.register("sgd", lr=LR, momentum=NONNEG, dampening=Real(), weight_decay=NONNEG, nesterov=FLAG)
class SGD(Optimizer):
    """Stochastic gradient descent, optionally with (Nesterov) momentum, torch.optim.SGD.

    b = g on the first step, then b = momentum b + (1 - dampening) g  (with momentum)
    d = g + momentum b if nesterov else b  (d = g without momentum)
    p -= lr d
    """

    def __init__(self, params, lr=0.001, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        if nesterov and (np.any(np.less_equal(momentum, 0)) or np.any(np.not_equal(dampening, 0))):
            raise ConfigError(f"optimizer.nesterov: needs momentum > 0 and dampening = 0, got momentum={momentum} "
                              f"and dampening={dampening}")
        self.momentum, self.dampening, self.nesterov = _hp(momentum), _hp(dampening), bool(nesterov)
        self.heavy = bool(np.any(self.momentum > 0))  # structural: see branches
        # not structural: a row without dampening scales g by 1.0, which is exact
        self.damped = bool(np.any(self.dampening != 0))
        super().__init__(params, lr, weight_decay)

    @classmethod
    def branches(cls, hp):
        return super().branches(hp) + (hp["momentum"] > 0,)

    def init_state(self, p):
        return {"buf": np.zeros_like(p)} if self.heavy else {}

    def update(self, p, g, s, w):
        if self.heavy:
            buf = s["buf"]
            if self.t == 1:
                np.copyto(buf, g)  # torch: the first step's buffer is the gradient itself
            else:
                buf *= np.float32(self.momentum)
                buf += _scale(g, 1.0 - self.dampening, w.tmp) if self.damped else g
            g = _axpy(self.momentum, buf, g, w.tmp) if self.nesterov else buf
        _descend(p, self._lr, g, w.tmp2)


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
        self.alpha, self.eps, self.momentum, self.centered = _hp(alpha), _hp(eps), _hp(momentum), bool(centered)
        self.heavy = bool(np.any(self.momentum > 0))  # structural: see branches
        super().__init__(params, lr, weight_decay)

    @classmethod
    def branches(cls, hp):
        return super().branches(hp) + (hp["momentum"] > 0,)

    def init_state(self, p):
        s = {"v": np.zeros_like(p)}
        if self.centered:
            s["m"] = np.zeros_like(p)
        if self.heavy:
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
        if self.heavy:
            buf = s["buf"]
            buf *= np.float32(self.momentum)
            buf += avg
            _descend(p, self._lr, buf, tmp)
        else:
            _descend(p, self._lr, avg, tmp)


@OPTIMIZERS.register("adagrad", lr=LR, lr_decay=NONNEG, weight_decay=NONNEG, initial_accumulator_value=NONNEG,
                     eps=NONNEG)
class Adagrad(Optimizer):
    """Per-coordinate steps that shrink with the summed squared gradients, torch.optim.Adagrad (Duchi et al., 2011).

    s += g^2
    p -= lr / (1 + (t-1) lr_decay) * g / (sqrt(s) + eps)
    """

    def __init__(self, params, lr=0.01, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10):
        self.lr_decay, self.init_acc, self.eps = _hp(lr_decay), _hp(initial_accumulator_value), _hp(eps)
        super().__init__(params, lr, weight_decay)

    def init_state(self, p):
        return {"sum": np.full_like(p, self.init_acc)}

    def update(self, p, g, s, w):
        clr = self._lr / (1.0 + (self.t - 1) * self.lr_decay)
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
        self.rho, self.eps = _hp(rho), _hp(eps)
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
        _descend(p, self._lr, d, tmp)


@OPTIMIZERS.register("rprop", lr=LR, etas=Seq(Real(gt=0), length=2), step_sizes=Seq(Real(ge=0), length=2))
class Rprop(Optimizer):
    """Per-coordinate steps grown while the gradient keeps its sign, torch.optim.Rprop (Riedmiller & Braun, 1993).

    f = eta+ if g g_prev > 0, eta- if < 0, else 1; step = clip(step f, step_min, step_max)
    g = 0 where f = eta-; p -= sign(g) step; g_prev = g
    Steps start at lr, and lr is used only there (as in torch: a schedule changes nothing).
    """

    def __init__(self, params, lr=0.01, etas=(0.5, 1.2), step_sizes=(1e-6, 50)):
        self.eta_minus, self.eta_plus = _hp(etas[0]), _hp(etas[1])
        self.step_min, self.step_max = _hp(step_sizes[0]), _hp(step_sizes[1])
        if not (np.all(self.eta_minus < 1) and np.all(self.eta_plus > 1)):  # torch's check (eta- > 0: the registry's)
            raise ConfigError(f"optimizer.etas: must be (eta-, eta+) with 0 < eta- < 1 < eta+, got {list(etas)}")
        super().__init__(params, lr, 0.0)

    @classmethod
    def branches(cls, hp):
        return ()  # no weight decay

    def init_state(self, p):
        step = np.empty_like(p)
        step[...] = np.float32(self._lr)
        return {"prev": np.zeros_like(p), "step_size": step}

    def update(self, p, g, s, w):
        prev, step, f = s["prev"], s["step_size"], w.tmp
        np.multiply(g, prev, out=f)
        np.sign(f, out=f)
        one = f.dtype.type(1)
        f[...] = np.where(f > 0, np.float32(self.eta_plus), np.where(f < 0, np.float32(self.eta_minus), one))
        step *= f
        np.clip(step, np.float32(self.step_min), np.float32(self.step_max), out=step)
        np.copyto(prev, g)
        prev[f == np.float32(self.eta_minus)] = 0.0  # torch: where the factor is eta- (a sign change)
        np.sign(prev, out=f)
        f *= step
        p -= f


@OPTIMIZERS.register("asgd", lr=LR, lambd=NONNEG, alpha=NONNEG, t0=NONNEG, weight_decay=NONNEG)
class ASGD(Optimizer):
    """SGD with a decaying step and a running average of the iterates, torch.optim.ASGD (Polyak & Juditsky, 1992).

    p *= 1 - lambd eta; p -= eta g; ax = p if mu = 1 else ax + mu (p - ax)
    then eta = lr / (1 + lambd lr t)^alpha, mu = 1 / max(1, t - t0)
    eta and mu start at lr and 1 and are float32, as torch keeps them. The training loop
    evaluates p, not the average ax (torch's ASGD does not swap them either).
    """

    def __init__(self, params, lr=0.01, lambd=1e-4, alpha=0.75, t0=1e6, weight_decay=0.0):
        self.lambd, self.alpha, self.t0 = _hp(lambd), _hp(alpha), _hp(t0)
        super().__init__(params, lr, weight_decay)
        self.eta = _hp(np.float32(self._lr).astype(np.float64))  # (K, 1) per row when stacked
        self.mu = _hp(np.ones_like(self._lr))

    def init_state(self, p):
        return {"ax": np.zeros_like(p)}

    def step(self, grads, rows=None):
        super().step(grads, rows)
        if rows is None or _all(np.asarray(rows)):  # a masked step set its rows' through views
            self.advance()

    def advance(self) -> None:
        """eta and mu for the next step, from this step's count (in place for stacked rows)."""
        eta = np.float32(self._lr / np.power(1.0 + self.lambd * self._lr * self.t, self.alpha)).astype(np.float64)
        self._keep(eta=eta, mu=np.float32(1.0 / np.maximum(1.0, self.t - self.t0)).astype(np.float64))

    def update(self, p, g, s, w):
        p *= np.float32(1.0 - self.lambd * self.eta)
        _descend(p, self.eta, g, w.tmp)
        ax, d = s["ax"], w.tmp
        np.subtract(p, ax, out=d)
        d *= np.float32(self.mu)
        ax += d
        np.copyto(ax, p, where=np.asarray(self.mu == 1.0))  # torch copies p where mu is 1
