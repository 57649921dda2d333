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

Stacked runs (`build_stacked`): one optimizer updates a (K, P) block of rows, one run's
flat parameters per row, each row with its own numeric hyperparameters, held as (K, 1)
float64 columns that broadcast over P. A plain optimizer holds them as float64 NumPy
scalars: one implementation, the same float64 math and the same float32 cast points, so
a row of a group is bit for bit that row stepped alone. Options that select a code path
(nesterov, amsgrad, centered, momentum > 0, weight decay > 0, ...) are the group's one
value: `group_key` says which runs may share an optimizer.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np

from lossbench.errors import ConfigError
from lossbench.registry import Bool, Int, Real, Registry, Seq

OPTIMIZERS = Registry("optimizer", context=("params",))

# Constraints shared by many optimizers (torch.optim's constructor checks).
LR = Real(gt=0)
NONNEG = Real(ge=0)
FLAG = Bool()
BETAS = Seq(Real(ge=0, lt=1), length=2)
ADAM_FAMILY = dict(lr=LR, betas=BETAS, eps=NONNEG, weight_decay=NONNEG)


def _hp(x) -> np.float64 | np.ndarray:
    """A numeric hyperparameter as the optimizer holds it, in float64: a NumPy scalar for
    a plain optimizer (scalar arithmetic is several times cheaper than a 0-d array's), a
    (K, 1) column for a stacked one (one value per row). Both round alike: + - * / and
    sqrt are exact IEEE operations, powers are np.power on either (see _Moments)."""
    return np.float64(x) if np.ndim(x) == 0 else np.array(x, dtype=np.float64)


def _all(x) -> bool:
    """x is nonzero (True) in every row: a plain optimizer's scalar, or a stacked one's
    column (ndarray.all() costs 1 us on a tiny array, four times count_nonzero)."""
    return np.count_nonzero(x) == x.size if type(x) is np.ndarray else bool(x)


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
    `self.t` (the step count, already incremented) and `self._lr` (which a schedule may
    change between steps), and may override `begin_step()` for per-step scalars. The
    base class checks the gradients and applies weight decay first. `g` must not be
    modified: it may be the model's gradient buffer. Hyperparameter ranges are the
    registry line's constraints; relations between them are checked in the constructor,
    in the message form of lossbench.registry.

    Numeric hyperparameters are float64 (`_hp`): scalars, or (K, 1) arrays for a stacked
    optimizer over one (K, P) parameter block. Per-row values an optimizer keeps between
    steps outside `state` are (K, 1) attributes updated in place (a masked step steps
    row views of them). Structural options are plain bools, equal across the rows.
    """

    def __init__(self, params: Sequence[np.ndarray], lr: float, weight_decay: float = 0.0,
                 decoupled_weight_decay: bool = False):
        if isinstance(params, np.ndarray):  # list(array) would silently make one parameter per row
            raise TypeError("optimizer params must be a list of float NumPy arrays, not one array: wrap it in [ ]")
        self.params = list(params)
        for p in self.params:
            if not isinstance(p, np.ndarray) or p.dtype.kind != "f":
                raise TypeError("optimizer params must be float NumPy arrays (updated in place)")
        self._lr = _hp(lr)  # a schedule may change it between steps (the `lr` property)
        if self._lr.ndim and (len(self.params) != 1 or self.params[0].shape[:1] != self._lr.shape[:1]):
            raise ValueError("a stacked optimizer takes one (K, P) parameter block and (K, 1) hyperparameters")
        self.weight_decay = _hp(weight_decay)
        self.decays = bool(np.any(self.weight_decay > 0))  # structural: see group_key
        self.decoupled = bool(decoupled_weight_decay)
        self.t = 0
        # the tensors a flat buffer holds, as (name, shape) in order: the model's layers'
        # weights and biases (the training loop sets it); None: the buffer is one tensor.
        # Only optimizers that work layer by layer (lamb) read it.
        self.layout: list[tuple[str, tuple]] | None = None
        self.state = [self.init_state(p) for p in self.params]
        self.scratch = [Scratch(np.empty_like(p), np.empty_like(p), np.empty_like(p)) for p in self.params]

    @property
    def lr(self):
        """The learning rate: a float for a plain optimizer; for a stacked one the (K, 1)
        float64 column of its rows' rates, whose rows a schedule writes (`opt.lr[i] = x`)."""
        return float(self._lr) if self._lr.ndim == 0 else self._lr

    @lr.setter
    def lr(self, value) -> None:
        if self.stacked:
            self._lr[...] = value  # in place, so row views (a masked step) and callers holding it see it
        else:
            self._lr = np.float64(value)

    @property
    def stacked(self) -> bool:
        return self._lr.ndim == 2

    @classmethod
    def branches(cls, hp: dict) -> tuple:
        """The values, besides boolean options, that select code paths, from checked
        hyperparameters `hp`: runs that share an optimizer must agree on them."""
        return (hp["weight_decay"] > 0,)

    def init_state(self, p: np.ndarray) -> dict:
        return {}

    def copies(self) -> int:
        """Arrays the size of the parameters this optimizer holds (state and scratch): its
        memory is this many times the model's."""
        return len(self.state[0]) + len(vars(self.scratch[0])) if self.params else 0

    def step(self, grads: Sequence[np.ndarray], rows=None) -> None:
        """One step from `grads` (matching `params`). `rows` (stacked only): a bool per
        row; the rows where it is False, state included, keep their bits. The step count
        is shared, so a row once left out must stay out (a run that stopped)."""
        if len(grads) != len(self.params):
            raise ValueError(f"expected {len(self.params)} gradients, got {len(grads)}")
        for i, (p, g) in enumerate(zip(self.params, grads)):
            if np.shape(g) != p.shape:
                raise ValueError(f"gradient {i} has shape {np.shape(g)}, its parameter {p.shape}")
        if rows is not None:
            rows = np.asarray(rows, dtype=bool)
            if not self.stacked or rows.shape != self._lr.shape[:1]:
                raise ValueError(f"rows must be one bool per row of a stacked optimizer, got shape {rows.shape}")
            if not _all(rows):
                return self._step_rows(grads, rows)
        self.t += 1
        self.begin_step()
        for p, g, s, w in zip(self.params, grads, self.state, self.scratch):
            if self.decays and self.decoupled:  # shrink the weights, not the gradient
                p *= np.float32(1.0 - self._lr * self.weight_decay)
            elif self.decays:
                g = _axpy(self.weight_decay, p, g, w.gwd)
            self.update(p, g, s, w)

    def begin_step(self) -> None:
        """Per-step scalars, after the step count is incremented (NAdam's momentum schedule)."""

    def _step_rows(self, grads: Sequence[np.ndarray], rows: np.ndarray) -> None:
        """Step each run of consecutive True rows through a view of this optimizer over
        them, which computes exactly what the whole block's step computes for them."""
        edges = np.flatnonzero(np.diff(np.concatenate(([0], rows.astype(np.int8), [0]))))
        for lo, hi in zip(edges[::2], edges[1::2]):
            self._view(lo, hi).step([g[lo:hi] for g in grads])
        self.t += 1

    def _keep(self, **values) -> None:
        """Set per-row values kept between steps (outside `state`): in place when stacked,
        so row views (a masked step) write through to this optimizer."""
        for name, v in values.items():
            if self.stacked:
                getattr(self, name)[...] = v
            else:
                setattr(self, name, np.float64(v))

    def _view(self, lo: int, hi: int) -> Optimizer:
        """This optimizer over rows lo:hi: its parameters, state, scratch and per-row
        attributes ((K, 1) arrays) are views, so the view's step writes them here."""
        view = copy.copy(self)
        for name, value in vars(self).items():
            if isinstance(value, np.ndarray) and value.ndim == 2:
                setattr(view, name, value[lo:hi])
        view.params = [p[lo:hi] for p in self.params]
        view.state = [{k: a[lo:hi] for k, a in s.items()} for s in self.state]
        view.scratch = [Scratch(*(a[lo:hi] for a in vars(w).values())) for w in self.scratch]
        return view

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


def _lerp_to(p, z, weight, tmp, tmp2) -> None:
    """p = torch.lerp(p, z, weight) in float32: p + w (z - p) where |w| < 0.5, else
    z - (z - p)(1 - w), per row when weight is a column."""
    w32 = np.float32(weight)
    np.subtract(z, p, out=tmp)
    np.multiply(tmp, np.float32(1) - w32, out=tmp2)
    tmp *= w32
    small = np.abs(w32) < 0.5
    if np.ndim(small) == 0:
        if small:
            p += tmp
        else:
            np.subtract(z, tmp2, out=p)
        return
    tmp += p
    tmp2 -= z
    np.negative(tmp2, out=tmp2)
    np.copyto(p, np.where(small, tmp, tmp2))


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


def group_key(name: str, hyperparams: dict) -> tuple:
    """What runs must share to be updated by one stacked optimizer: the registered name
    (an alias has its own defaults: `build_stacked` fills every row's from its one name),
    the boolean options and the values that select a code path (momentum > 0, weight
    decay > 0). Runs with equal keys may form a group; numeric hyperparameters may
    differ. Checks the hyperparameters (ConfigError in the usual form)."""
    hp = OPTIMIZERS.check(name, hyperparams)
    flags = tuple(sorted((k, v) for k, v in hp.items() if isinstance(v, bool)))
    return name, flags, OPTIMIZERS.get(name).branches(hp)


def check(name: str, hyperparams: dict) -> Optimizer:
    """The optimizer over a one-value stand-in: checks every setting and the relations
    between them (ConfigError) without allocating state the size of a model; its `lr` is
    the one the run will use (a schedule's base)."""
    return OPTIMIZERS.build(name, [np.zeros(1, np.float32)], **hyperparams)


def build_stacked(name: str, params2d: np.ndarray, rows: Sequence[dict]) -> Optimizer:
    """One optimizer over a (K, P) block of a stack's parameters (a view: updated in
    place), row i stepping as `build(name, [params2d[i]], **rows[i])` would, bit for bit.

    Every row is checked as it would be alone (same messages); the rows must share
    `group_key`. Its `lr` is the (K, 1) column of the rows' rates; `step([grads2d], rows=mask)`.
    """
    if not isinstance(params2d, np.ndarray) or params2d.ndim != 2 or len(rows) != len(params2d) or not rows:
        raise ValueError("build_stacked takes a (K, P) parameter array and K >= 1 hyperparameter mappings")
    checked = [OPTIMIZERS.check(name, dict(r)) for r in rows]
    for hp in checked:  # relations between options (nesterov needs momentum), as alone
        check(name, hp)
    if len({group_key(name, hp) for hp in checked}) > 1:
        raise ValueError(f"runs with different optimizer code paths cannot share one {name} optimizer: "
                         "group them by optimizers.group_key")
    return OPTIMIZERS.get(name)([params2d], **{k: _column([hp[k] for hp in checked]) for k in checked[0]})


def _column(values: list):
    """One option's row values as a stacked constructor takes them: numbers a (K, 1)
    float64 column, pairs (betas) a pair of columns, flags the group's one value."""
    if isinstance(values[0], bool):
        return values[0]
    if isinstance(values[0], (list, tuple)):
        return tuple(_column(list(col)) for col in zip(*values))
    return np.array(values, dtype=np.float64).reshape(-1, 1)
