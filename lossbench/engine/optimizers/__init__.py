"""Optimizers with torch.optim's names, defaults and update rules, in float32.

`base` holds the Optimizer class (its docstring is the design); each other module one
family. Importing the package registers them all. The functions below are the API:
build, check, group_key, build_stacked, clip_grad_norm.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np

from lossbench.engine.optimizers import adam, classic, groups, layerwise, lbfgs, schedule_free  # noqa: F401
from lossbench.engine.optimizers.base import OPTIMIZERS, Optimizer, Scratch

__all__ = ["OPTIMIZERS", "Optimizer", "Scratch", "build", "build_for_model", "build_stacked", "check", "clip_grad_norm",
           "group_key", "needs_closure", "plan"]


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


def needs_closure(name: str) -> bool:
    """The optimizer steps through a closure that re-evaluates the loss (lbfgs): the
    training loop calls its `step_closure`, and its run is never stacked with others."""
    return OPTIMIZERS.get(name).needs_closure


def group_key(name: str, hyperparams: dict) -> tuple:
    """What runs must share to be updated by one stacked optimizer: the registered name
    (an alias has its own defaults: `build_stacked` fills every row's from its one name),
    the options that are not numbers (flags, names, a fallback), the values that select a
    code path (momentum > 0, weight decay > 0) and, with param groups, each group's key.
    Runs with equal keys may form a group; numeric hyperparameters may differ. Checks the
    hyperparameters (ConfigError in the usual form)."""
    own, param_groups = groups.split(hyperparams)
    hp = OPTIMIZERS.check(name, own)
    fixed = tuple(sorted((k, json.dumps(v)) for k, v in hp.items() if not _numeric(v)))
    key = (name, fixed, OPTIMIZERS.get(name).branches(hp))
    return key + (groups.key(name, hyperparams, group_key),) if param_groups else key


def _numeric(v) -> bool:
    if isinstance(v, (list, tuple)):
        return all(_numeric(x) for x in v)
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check(name: str, hyperparams: dict) -> Optimizer:
    """The optimizer over a one-value stand-in: checks every setting, the relations
    between them and its param groups' (ConfigError) without allocating state the size of
    a model; its `lr` is the one the run will use (a schedule's base). `plan` checks the
    groups' selectors against a model."""
    for _, name_g, hp in groups.group_specs(name, hyperparams)[1:]:
        check(name_g, hp)
    own = groups.split(hyperparams)[0]
    stand_in = np.zeros((1, 1) if getattr(OPTIMIZERS.get(name), "matrices", False) else 1, np.float32)
    return OPTIMIZERS.build(name, [stand_in], **own)


def plan(name: str, hyperparams: dict, layout) -> list[tuple[str, dict, list[int]]]:
    """Which optimizer steps which tensors of a model with this layout: [(name, settings,
    tensor indices)] (one part, every tensor, for most). ConfigError for selectors that
    select nothing or a tensor twice."""
    if not groups.needs_parts(name, hyperparams):
        return [(name, hyperparams, list(range(len(layout))))]
    return groups.plan(name, hyperparams, layout)


def build_for_model(name: str, params2d: np.ndarray, rows: Sequence[dict], layout):
    """The optimizer of K stacked runs (rows of a (K, P) block, sharing `group_key`) over
    a model with this layout: `build_stacked` over the flat buffer when one elementwise
    optimizer steps every tensor (the fast path), else a groups.Partitioned whose parts
    take their tensors apart (param groups; Muon and Adafactor take shaped matrices)."""
    if not groups.needs_parts(name, rows[0]):
        opt = build_stacked(name, params2d, rows)
        opt.layout = layout  # its tensors, for optimizers that work layer by layer (lamb)
        return opt
    return groups.build_parts(name, params2d, list(rows), layout, _build_rows)


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


def _build_rows(name: str, blocks: list[np.ndarray], rows: Sequence[dict]) -> Optimizer:
    """One optimizer over (K, ...) blocks (one part of stacked runs' tensors), row i
    stepping as row i alone would."""
    checked = [OPTIMIZERS.check(name, dict(r)) for r in rows]
    return OPTIMIZERS.get(name)(blocks, **{k: _column([hp[k] for hp in checked]) for k in checked[0]})


def _column(values: list):
    """One option's row values as a stacked constructor takes them: numbers a (K, 1)
    float64 column, pairs (betas) a pair of columns, flags, choices and names (a string,
    a mapping or null, which group_key keeps equal across a group) the group's one value."""
    if isinstance(values[0], (bool, str, dict)) or values[0] is None:
        return values[0]
    if isinstance(values[0], (list, tuple)):
        return tuple(_column(list(col)) for col in zip(*values))
    return np.array(values, dtype=np.float64).reshape(-1, 1)
