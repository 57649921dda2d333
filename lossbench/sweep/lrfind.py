"""`lossbench lr-find` on an experiment: which optimizers it range-tests, on what, and
the grid that feeds the results back into the config.

Each distinct optimizer section of the experiment's runs (the grid's and the base's, its
`lr` left out: the test sweeps it) is tested on the config's base dataset, model, loss
and train section with the first seed; the grid's other keys are not swept.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from fractions import Fraction

import yaml

from lossbench import data
from lossbench.engine import optimizers
from lossbench.engine.lrfind import LRFind, check_range, lr_find
from lossbench.errors import ConfigError, LossbenchError
from lossbench.registry import show, split_named
from lossbench.sweep.config import validate_run

FACTORS = (1 / 3, 1.0, 3.0)  # the grid's rates around a suggestion
SHORT = "too short a curve: the rules read it without its first tenth and last 5 steps"


@dataclass
class Tested:
    """One optimizer's range test, or why it was skipped."""

    label: str  # "sgd", "adamw, weight_decay=0.05": the section without its lr
    optimizer: dict  # the section as the experiment's runs have it
    result: LRFind | None
    skipped: str = ""


def distinct_optimizers(exp) -> list[dict]:
    """The experiment's optimizer sections, in run order, one per setting other than lr."""
    seen: dict[str, dict] = {}
    for spec in exp.runs:
        opt = spec.config["optimizer"]
        seen.setdefault(json.dumps({k: v for k, v in opt.items() if k != "lr"}, sort_keys=True, default=str), opt)
    return list(seen.values())


def label(opt: dict) -> str:
    name, kw = split_named("optimizer", opt, "optimizer")
    return ", ".join([name, *(f"{k}={v if isinstance(v, (int, float)) else show(v)}" for k, v in kw.items()
                              if k != "lr")])


@dataclass
class Report:
    """`lossbench lr-find`'s result: each optimizer's test, and what `grid` needs."""

    name: str  # the config's
    tested: list[Tested]
    config_grid: dict | list | None  # the config's grid
    start: float
    end: float
    steps: int

    def grid(self, rule: str = "valley", factors=FACTORS) -> str:
        return grid(self.config_grid, self.tested, rule, factors)


def run(exp, start: float = 1e-7, end: float = 10.0, steps: int = 100, rules=("valley",),
        base_only: bool = False) -> Report:
    """Range-test every optimizer of `exp` (a validated Experiment), or only its base
    optimizer section; ConfigError (one line, naming the file) for bad options or a base
    config an optimizer does not fit."""
    check_range(start, end, steps, rules)
    base = {k: exp.config[k] for k in ("dataset", "model", "loss", "train")}
    out = []
    for opt in [exp.config["optimizer"]] if base_only else distinct_optimizers(exp):
        name = opt["name"]
        if optimizers.needs_closure(name):
            out.append(Tested(label(opt), opt, None, f"{name} steps through a closure with its own line search and "
                                                     "curvature pairs: a rate changed every step tests neither"))
            continue
        cfg = {**base, "optimizer": opt}
        try:
            validate_run(cfg, exp.datasets)
            res = lr_find(data.load_spec(cfg["dataset"], exp.datasets), model=cfg["model"], loss=cfg["loss"],
                          optimizer=opt, train=cfg["train"], seed=exp.config["seeds"][0], start=start, end=end,
                          steps=steps, rules=rules)
        except LossbenchError as e:
            raise ConfigError(f"{exp.source}: {e} (lr-find with optimizer {label(opt)})") from None
        out.append(Tested(label(opt), opt, res))
    if all(t.result is None for t in out):
        raise ConfigError(f"{exp.source}: nothing to range-test: {out[0].skipped}")
    return Report(exp.name, out, exp.config.get("grid"), start, end, steps)


def _sig2(x: float) -> float:
    return float(f"{x:.2g}")


def _scaled(opt: dict, lr: float) -> dict:
    """The optimizer section at section rate `lr`, its parts' rates (param groups, Muon's
    fallback) scaled with it, as they were in the range test (groups.Partitioned)."""
    name, own = split_named("optimizer", opt, "optimizer")
    own.pop("param_groups", None)
    factor = lr / optimizers.OPTIMIZERS.check(name, own)["lr"]
    out = copy.deepcopy(opt)
    out["lr"] = lr

    def part(section: dict) -> dict:
        p_name = section.get("name", name)
        if "lr" in section or p_name != name:  # a rate of its own (given, or its optimizer's default)
            hp = {k: v for k, v in section.items() if k not in ("name", "params")}
            section["lr"] = _sig2(optimizers.OPTIMIZERS.check(p_name, hp)["lr"] * factor)
        return section

    for g in out.get("param_groups") or []:
        part(g)
    if "fallback" in out:
        fb = out["fallback"]
        out["fallback"] = part({"name": fb} if isinstance(fb, str) else fb)
    return out


def grid(raw, tested: list[Tested], rule: str = "valley", factors=FACTORS) -> str:
    """A `grid:` for the config (YAML text): each tested optimizer at its suggestion times
    `factors`, rounded to 2 significant digits, as a list of mappings; the config's other
    grid keys are kept when every mapping of its grid sweeps them alike."""
    grids = raw if isinstance(raw, list) else [raw] if raw else []
    others = [{k: v for k, v in g.items() if k.split(".")[0] != "optimizer"} for g in grids]
    keep = others[0] if others and all(o == others[0] for o in others) else {}
    dropped = sorted({k for o in others for k in o} - set(keep))
    times = ", ".join(str(Fraction(f).limit_denominator(10)) for f in factors)
    lines = [f"# lossbench lr-find: optimizer.lr = {rule} suggestion x {{{times}}}; replaces the config's grid"]
    entries = []
    if dropped:
        lines.append(f"# left out (they differ between the config's grid entries): {', '.join(dropped)}")
    for t in tested:
        lr = t.result.suggestions.get(rule, (float('nan'),))[0] if t.result is not None else float("nan")
        if not lr == lr:  # NaN: skipped, or too short a curve to suggest
            lines.append(f"# {t.label}: no suggestion ({t.skipped or SHORT})")
            continue
        rates = sorted({_sig2(lr * f) for f in factors})
        entries.append({"optimizer": [_scaled(t.optimizer, r) for r in rates], **copy.deepcopy(keep)})
    text = yaml.safe_dump({"grid": entries}, sort_keys=False, default_flow_style=None, width=10_000) if entries else ""
    return "\n".join(lines) + "\n" + text
