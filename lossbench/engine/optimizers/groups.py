"""Parameter groups: a model's tensors stepped by different optimizers or settings, as
torch's param_groups, and the tensors as shaped views for optimizers that need them.

A config's optimizer section may hold `param_groups`, a list of mappings, each with
`params` (which tensors: a name from SELECTORS, or a glob on the layout's names such as
"*.bias" or "2.Linear.weight"; one or a list) and settings. A group without a `name`
(or with the section's) starts from the section's settings; one naming another
optimizer from that optimizer's defaults. A tensor belongs to the first group that
selects it, else to the section's optimizer. Muon takes only matrices: its group's other
tensors go to its `fallback`.

When every tensor ends in one elementwise optimizer, the run keeps the one-buffer fast
path (`build_stacked`); otherwise `Partitioned` steps each part with its own optimizer.
"""

from __future__ import annotations

import fnmatch
import json

import numpy as np

from lossbench.engine.optimizers.base import OPTIMIZERS, Optimizer, views
from lossbench.registry import fail, split_named

# Named sets of tensors (layout entries: name, shape, layer, last; see nn.layers.Tensor)
SELECTORS = {
    "weights": lambda t: t.name.endswith(".weight"),
    "biases": lambda t: t.name.endswith(".bias"),
    "matrices": lambda t: len(t.shape) >= 2,  # dense and convolution weights
    "vectors": lambda t: len(t.shape) < 2,  # biases, batch norm's scale and shift
    "input": lambda t: t.layer == 0,  # the first layer with parameters
    "output": lambda t: t.last,  # the last one
    "hidden": lambda t: t.layer > 0 and not t.last,
}
KEY = "optimizer.param_groups"


def split(hyperparams: dict) -> tuple[dict, list]:
    """(the section's own settings, its param_groups list or [])."""
    hp = dict(hyperparams)
    groups = hp.pop("param_groups", None)
    if groups is None:
        return hp, []
    if isinstance(groups, dict):  # one group written without its list (a grid value is one whole list)
        raise fail(KEY, "must be a list of groups, got one mapping: write [{...}] (in a grid, each value is one "
                        "such list: [[{...}], [{...}]])", groups)
    if not isinstance(groups, list) or not groups:
        raise fail(KEY, "must be a non-empty list of mappings {params: ..., name?: ..., settings}", groups)
    return hp, groups


def group_specs(name: str, hyperparams: dict) -> list[tuple[list[str], str, dict]]:
    """Each param group as (selectors, optimizer name, its full settings), checked without
    a model (names, settings, selector syntax); the section's own settings come first
    with selectors [] (everything left)."""
    hp, groups = split(hyperparams)
    if groups:
        OPTIMIZERS.check(name, hp)  # the section's own settings first: their errors are the section's
    out = [([], name, hp)]
    for i, g in enumerate(groups):
        key = f"{KEY}[{i}]"
        if not isinstance(g, dict):
            raise fail(key, "must be a mapping with params (which tensors) and settings", g)
        if "params" not in g:
            raise fail(f"{key}.params", "missing: say which tensors, e.g. params: biases", g)
        sel = g["params"] if isinstance(g["params"], list) else [g["params"]]
        if not sel or not all(isinstance(s, str) and s for s in sel):
            raise fail(f"{key}.params", f"must be a selector or a list of them: one of {list(SELECTORS)} "
                                        "or a glob on tensor names such as '*.bias'", g["params"])
        g_name, g_hp = split_named(key, {"name": name, **g}, "optimizer")
        g_hp.pop("params")
        if "param_groups" in g_hp:
            raise fail(f"{key}.param_groups", "must not be inside a group", g_hp["param_groups"])
        if g_name == name:
            g_hp = {**hp, **g_hp}
        OPTIMIZERS.check(g_name, g_hp, key)
        out.append((sel, g_name, g_hp))
    for i, (_, g_name, g_hp) in enumerate(out):
        key = "optimizer" if i == 0 else f"{KEY}[{i - 1}]"
        if len(out) > 1 and OPTIMIZERS.get(g_name).needs_closure:
            raise fail(f"{key}.name", "cannot be in param groups: it steps the whole model with its own evaluations",
                       g_name)
        if i > 0 and g_name == "gd":  # its one difference from sgd is the run's batch, not a group's
            raise fail(f"{key}.name", "must not be gd in a group: gd differs from sgd only by the full batch, which "
                                      "is the whole run's (train.batch_size: full); use sgd", g_name)
        if g_name == "muon":
            f_name = split_named(f"{key}.fallback", g_hp.get("fallback", "adamw"), "optimizer")[0]
            if f_name == "muon" or OPTIMIZERS.get(f_name).needs_closure:
                raise fail(f"{key}.fallback", "must be an optimizer for any tensor (not muon, not one that steps "
                                              "the whole model)", f_name)
    return out


def _selects(selector: str, t) -> bool:
    if selector in SELECTORS:
        return SELECTORS[selector](t)
    return fnmatch.fnmatchcase(t.name, selector)


def plan(name: str, hyperparams: dict, layout) -> list[tuple[str, dict, list[int]]]:
    """The parts of a model's tensors (layout order) and who steps them: a list of
    (optimizer name, settings, tensor indices), none empty. ConfigError for a selector
    that selects nothing or a tensor two groups claim."""
    specs = group_specs(name, hyperparams)
    owner: dict[int, int] = {}
    for j, (sel, _, _) in enumerate(specs[1:], start=1):
        for s in sel:
            hits = [i for i, t in enumerate(layout) if _selects(s, t)]
            if not hits:
                names = [t.name for t in layout]
                raise fail(f"{KEY}[{j - 1}].params", f"selects no tensor of this model: use one of "
                                                     f"{list(SELECTORS)} or a glob on its tensors {names}", s,
                           list(SELECTORS) + names)
            for i in hits:
                if owner.get(i, j) != j:
                    raise fail(f"{KEY}[{j - 1}].params", f"selects {layout[i].name}, which group "
                                                         f"{owner[i] - 1} already has", s)
                owner[i] = j
    parts = []
    for j, (_, g_name, g_hp) in enumerate(specs):
        idx = [i for i in range(len(layout)) if owner.get(i, 0) == j]
        if j and g_name == "muon" and not any(len(layout[i].shape) >= 2 for i in idx):
            raise fail(f"{KEY}[{j - 1}].params", "selects no matrix, and muon updates only matrices (its "
                                                 "fallback would step them all): select weights", specs[j][0])
        parts += _matrices_apart(g_name, g_hp, idx, layout)
    return [p for p in parts if p[2]]


def _matrices_apart(name, hp, idx, layout) -> list[tuple[str, dict, list[int]]]:
    """Muon's part as its matrices and, for the rest, its fallback's part."""
    if name != "muon" or not idx:
        return [(name, hp, idx)]
    f_name, f_hp = split_named("optimizer.fallback", hp.get("fallback", "adamw"), "optimizer")
    mats = [i for i in idx if len(layout[i].shape) >= 2]
    return [(name, hp, mats), (f_name, f_hp, [i for i in idx if i not in mats])]


def needs_parts(name: str, hyperparams: dict) -> bool:
    """Whether a run's optimizer needs the model's tensors apart (param groups, or an
    optimizer that takes shaped tensors): if not, it steps the one flat buffer."""
    return "param_groups" in hyperparams or getattr(OPTIMIZERS.get(name), "structured", False)


def build_parts(name: str, params2d: np.ndarray, rows: list[dict], layout, build_rows) -> Partitioned:
    """One Partitioned optimizer over a (K, P) block for K runs with one plan (their
    group keys are equal). `build_rows(name, blocks, rows)` builds one part's optimizer."""
    plans = [plan(name, r, layout) for r in rows]
    parts = []
    for j, (p_name, _, idx) in enumerate(plans[0]):
        cls = OPTIMIZERS.get(p_name)
        parts.append((build_rows(p_name, blocks(cls, params2d, layout, idx), [p[j][1] for p in plans]), idx))
    base = np.array([[OPTIMIZERS.check(name, split(r)[0])["lr"]] for r in rows], dtype=np.float64)
    return Partitioned(parts, layout, base)


def blocks(cls, a: np.ndarray, layout, idx: list[int]) -> list[np.ndarray]:
    """Views of the tensors idx of a (K, P) block as optimizer `cls` takes them: a
    structured one a shaped view per tensor in torch's orientation (Muon: matrices, so
    convolution weights as (out, in * kh * kw)); an elementwise one a flat (K, n) view
    per run of adjacent tensors."""
    if not getattr(cls, "structured", False):
        return [a[:, lo:hi] for lo, hi in _spans(layout, idx)]
    shaped = views(a, layout, torch_order=True)
    if getattr(cls, "matrices", False):
        return [np.reshape(shaped[i], shaped[i].shape[:2] + (-1,), copy=False) for i in idx]
    return [shaped[i] for i in idx]


def _spans(layout, idx: list[int]) -> list[tuple[int, int]]:
    """The buffer ranges of tensors idx, adjacent tensors merged."""
    edges = np.cumsum([0] + [int(np.prod(t.shape)) for t in layout])
    spans: list[list[int]] = []
    for i in idx:
        if spans and spans[-1][1] == edges[i]:
            spans[-1][1] = int(edges[i + 1])
        else:
            spans.append([int(edges[i]), int(edges[i + 1])])
    return [(a, b) for a, b in spans]


class Partitioned:
    """Optimizers each over a part of a (K, P) block of stacked runs' parameters.

    Its `lr` is the (K, 1) column of the section's rates, which a schedule writes; each
    part's rate follows it in proportion (a part at 3e-4 under a section at 1e-3 keeps
    that ratio), as torch's schedulers scale every group's base rate by one factor.
    """

    needs_closure = False  # param groups refuse optimizers that do (group_specs)

    def __init__(self, parts: list[tuple[Optimizer, list[int]]], layout, base_lr: np.ndarray):
        self.parts, self.layout = parts, layout
        self.base, self.lr = base_lr, base_lr.copy()
        self.bases = [np.array(opt.lr, dtype=np.float64) for opt, _ in parts]

    def step(self, grads, rows=None) -> None:
        (g,) = grads
        ratio = self.lr / self.base
        for (opt, idx), base in zip(self.parts, self.bases):
            opt.lr = base * ratio
            opt.step(blocks(type(opt), g, self.layout, idx), rows=rows)


    def eval(self, rows=None) -> None:
        """Every part to its evaluation point (Schedule-Free's x; others stay)."""
        for opt, _ in self.parts:
            if hasattr(opt, "eval"):
                opt.eval(rows=rows)

    def train(self, rows=None) -> None:
        for opt, _ in self.parts:
            if hasattr(opt, "train"):
                opt.train(rows=rows)

    def copies(self) -> int:
        return max(opt.copies() for opt, _ in self.parts)


def key(name: str, hyperparams: dict, one_key) -> tuple:
    """What runs with param groups must share to step as one Partitioned optimizer:
    each part's selectors and optimizer key (`one_key(name, hp)`)."""
    return tuple((json.dumps(sel), one_key(g_name, g_hp)) for sel, g_name, g_hp in group_specs(name, hyperparams))


def describe(parts: list[tuple[str, dict, list[int]]], layout) -> str:
    """`muon (lr=0.02): 1.Linear.weight, ...; adamw (defaults): ...` for `--dry-run`: each
    part's optimizer, the settings it was given (the rest are its defaults), its tensors."""
    def settings(hp: dict) -> str:
        given = ", ".join(f"{k}={v}" for k, v in hp.items() if k != "fallback")
        return given or "defaults"

    return "; ".join(f"{n} ({settings(hp)}): {', '.join(layout[i].name for i in idx)}" for n, hp, idx in parts)

