"""The optimizer base class and its helpers. Optimizers have torch.optim's names, defaults and update rules, in float32.

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
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lossbench.registry import Bool, Real, Registry, Seq

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


def _per(x, p: np.ndarray):
    """A hyperparameter to broadcast against the parameter p: a scalar as it is, a stacked
    (K, 1) column as (K, 1, ..., 1) with p's number of axes (p a (K, A, B) matrix)."""
    return x if np.ndim(x) == 0 else np.reshape(x, (-1,) + (1,) * (p.ndim - 1))


def views(a: np.ndarray, layout, torch_order: bool = False) -> list[np.ndarray]:
    """Each tensor of a flat (..., P) buffer as a view shaped (..., *shape), in the order
    of `layout` (a model's: entries with a name and a shape). `torch_order`: in torch's
    orientation (Linear's weight as (out, in): the transpose of how it is stored). Views,
    never copies: updating one updates the buffer."""
    lead, out, offset = a.shape[:-1], [], 0
    for t in layout:
        n = int(np.prod(t[1]))
        v = np.reshape(a[..., offset : offset + n], lead + tuple(t[1]), copy=False)
        out.append(v.swapaxes(-1, -2) if torch_order and getattr(t, "transposed", False) else v)
        offset += n
    if offset != a.shape[-1]:
        raise ValueError(f"a layout of {offset} values for a buffer of {a.shape[-1]}")
    return out


def _lerp(m: np.ndarray, g: np.ndarray, w: float, tmp: np.ndarray) -> None:
    """m += w (g - m), torch's lerp_: the moving average of the Adam family."""
    np.subtract(g, m, out=tmp)
    tmp *= np.float32(w)
    m += tmp


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

    An optimizer with `needs_closure` (lbfgs) re-evaluates the loss within a step: it
    steps by `step_closure(closure)`, not `step`, and runs alone (never stacked).

    Numeric hyperparameters are float64 (`_hp`): scalars, or (K, 1) arrays for a stacked
    optimizer over one (K, P) parameter block. Per-row values an optimizer keeps between
    steps outside `state` are (K, 1) attributes updated in place (a masked step steps
    row views of them). Structural options are plain bools, equal across the rows.
    """

    needs_closure = False

    def __init__(self, params: Sequence[np.ndarray], lr: float, weight_decay: float = 0.0,
                 decoupled_weight_decay: bool = False):
        if isinstance(params, np.ndarray):  # list(array) would silently make one parameter per row
            raise TypeError("optimizer params must be a list of float NumPy arrays, not one array: wrap it in [ ]")
        self.params = list(params)
        for p in self.params:
            if not isinstance(p, np.ndarray) or p.dtype.kind != "f":
                raise TypeError("optimizer params must be float NumPy arrays (updated in place)")
        self._lr = _hp(lr)  # a schedule may change it between steps (the `lr` property)
        if self._lr.ndim and any(p.ndim < 2 or p.shape[:1] != self._lr.shape[:1] for p in self.params):
            raise ValueError("a stacked optimizer takes (K, ...) parameter blocks and (K, 1) hyperparameters")
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
