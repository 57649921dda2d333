"""Experiment configs: read YAML, apply --set overrides, validate, expand the grid.

Everything is checked before anything trains, by the constraints the registries and the
engine declare (lossbench.registry); this module adds only what is about a config file:
its sections, the grid, seeds, target and name. Every error is a ConfigError whose
message is one line: `<file>: <dotted.key>: <what is wrong>, got <value>`.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from lossbench import data
from lossbench.engine import losses, nn, optimizers, schedules
from lossbench.engine.functions import FUNCTIONS
from lossbench.engine.metrics import TASK_METRICS, value_range
from lossbench.engine.train import (
    POINT_LOSS,
    POINT_MODEL,
    EarlyStopping,
    TrainConfig,
    check_clipping,
    check_targets,
    model_outputs,
    point_problem,
)
from lossbench.errors import ConfigError, LossbenchError
from lossbench.registry import Check, Int, Real, Schema, Seq, Text, did_you_mean, fail, show, split_named
from lossbench.sweep import prune
from lossbench.sweep import search as searching
from lossbench.sweep.spec import RunSpec, run_id
from lossbench.sweep.yamlfile import parse_yaml, read_yaml

SECTIONS = ("name", "dataset", "model", "loss", "optimizer", "train", "seeds", "grid", "search", "target", "prune")
REQUIRED = ("dataset", "model", "loss", "optimizer")
NAMED = {"dataset": data.DATASETS, "model": nn.MODELS, "loss": losses.LOSSES, "optimizer": optimizers.OPTIMIZERS}
GRIDDABLE = ("dataset", "model", "loss", "optimizer", "train")
EXAMPLE = {"dataset": "moons", "model": "mlp", "loss": "cross_entropy", "optimizer": "adam"}
SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
NAME = Check(lambda v: isinstance(v, str) and bool(SLUG.match(v)) and ".." not in v,
             "a plain name of letters, digits, '.', '_' or '-' (no '/', no '..'; quote one made of digits)")
SEEDS = Seq(Int(ge=0), min_length=1, unique=True)


def _target(metric: str, value: float):
    """What `target` holds: a metric and the value that counts as reaching it."""


TARGET = Schema.of(_target, owner="target", metric=Text(), value=Real())


@dataclass
class Experiment:
    source: str
    name: str
    config: dict  # the resolved base config with grid, seeds and target
    runs: list[RunSpec]
    swept: list[str]  # columns naming a grid cell, in order
    target: dict | None
    task: str = "classification"
    metrics: tuple = ()
    cells: list[dict] = field(default_factory=list)
    datasets: dict = field(default_factory=dict, repr=False)  # loaded while validating; runs reuse them
    data: list[dict] = field(default_factory=list)  # each distinct dataset as named in run ids (data.identity)
    prune: prune.Pruning | None = None  # successive halving (sweep.prune)
    searched: list[str] = field(default_factory=list)  # swept keys that come from `search` (trials, not brackets)
    trials: int = 0  # search trials per grid cell (every block's), 0 without a search

    def dataset_specs(self) -> list[dict]:
        """Each distinct `dataset` mapping the runs use, in run order."""
        seen: dict[str, dict] = {}
        for spec in self.runs:
            seen.setdefault(json.dumps(spec.config["dataset"], sort_keys=True, default=str), spec.config["dataset"])
        return list(seen.values())


class _Fail(Exception):
    """A problem at a dotted key; the caller adds the file name."""


def apply_overrides(raw: dict, overrides: list[str] | tuple = ()) -> dict:
    """`--set optimizer.lr=0.1`: the value is parsed as YAML (numbers, lists, mappings)."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise _Fail(f"--set: expected key=value, got {show(item)}")
        key, text = (s.strip() for s in item.split("=", 1))
        value = parse_yaml(text, f"--set {item}") if text else None
        parts = key.split(".")
        if "[" in key and parts[0] != "grid":
            raise _Fail(f"--set {key}: a list item cannot be set alone; set the whole list, e.g. "
                        f"--set {key.split('[')[0]}=[...]")
        if parts[0] == "grid" and len(parts) > 2:  # grid keys are dotted paths themselves
            parts = ["grid", ".".join(parts[1:])]
        if parts[:2] == ["search", "space"] and len(parts) > 3:  # so are a search space's
            parts = ["search", "space", *_space_key(raw, ".".join(parts[2:]))]
        node = raw
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if isinstance(child, str) and i == 0 and part in NAMED:
                child = {"name": child}  # `loss: mse` + `--set loss.delta=1` -> {name: mse, delta: 1}
            if child is None:
                child = {}
            if not isinstance(child, dict):
                raise _Fail(f"--set: {'.'.join(parts[: i + 1])} is not a mapping, cannot set {key}, got {show(item)}")
            node[part] = child
            node = child
        node[parts[-1]] = value
        _not_shadowed(raw, key)
    return raw


def _space_key(raw: dict, rest: str) -> list[str]:
    """`optimizer.lr.low` below search.space -> ['optimizer.lr', 'low'] when the space has
    the key optimizer.lr; otherwise the whole rest is one (new) key."""
    space = raw.get("search", {}).get("space") if isinstance(raw.get("search"), dict) else None
    for k in space if isinstance(space, dict) else ():
        if rest.startswith(f"{k}."):
            return [k, *rest[len(k) + 1:].split(".")]
    return [rest]


def _not_shadowed(raw: dict, key: str) -> None:
    """A --set the grid or the search would overwrite in every run is refused, not ignored:
    `--set optimizer.lr=0.5` does nothing when the grid sets `optimizer` or `optimizer.lr`."""
    if key.split(".")[0] in ("grid", "search"):
        return
    for section, blocks, field_ in (("grid", raw.get("grid"), None), ("search", raw.get("search"), "space")):
        for block in blocks if isinstance(blocks, list) else [blocks]:
            keys = block.get(field_) if field_ and isinstance(block, dict) else block
            for g_key in keys if isinstance(keys, dict) else ():
                g_key = str(g_key)
                if g_key == key or key.startswith(g_key + ".") or g_key.startswith(key + "."):
                    where = f"{section}.space" if field_ else section
                    how = f"--set {where}.{g_key}=..." if isinstance(blocks, dict) else "its list in the config"
                    raise _Fail(f"--set {key}: the {section} sets {g_key}, which replaces it in every "
                                f"{'trial' if field_ else 'cell it sweeps'}; change the {section} instead ({how})")


# ---------- validation of one resolved run ----------


def _planned_model(cfg: dict, data_cache: dict):
    """(task, the dataset's n_outputs, the run's model laid out but not allocated), for a
    run whose dataset options are checked (validate_run checks them first)."""
    ds = cfg["dataset"]
    name = ds["name"]
    if _is_function(ds) or any(_named(k, cfg[k]) == {"name": p} for k, p in (("model", POINT_MODEL),
                                                                                ("loss", POINT_LOSS))):
        return _point_model(cfg, data_cache)
    task, n_features, n_outputs, image_shape = data.describe(ds, data_cache)
    loss_name, loss_options = split_named("loss", cfg["loss"], "loss")
    loss = losses.build(loss_name, **loss_options)
    n_out = model_outputs(loss, loss_name, task, n_outputs, name)
    if loss.nonnegative_targets:  # only then the targets' values matter here: load them
        check_targets(loss, loss_name, data.load_spec(ds, data_cache))
    model_name, model_options = split_named("model", cfg["model"], "model")
    return task, n_outputs, nn.plan(model_name, n_features, n_out, 0, image_shape, **model_options)


def _point_model(cfg: dict, data_cache: dict):
    """A test function's (task, n_outputs, model): the point; its config says model point
    and loss function, which no other dataset takes."""
    ds = cfg["dataset"]
    if not _is_function(ds):
        key = "model" if _named("model", cfg["model"]) == {"name": POINT_MODEL} else "loss"
        raise fail(f"{key}.name", f"must be one of {(nn.MODELS if key == 'model' else losses.LOSSES).names()}: "
                                  f"{cfg[key]} is a test function's", cfg[key])
    for key, placeholder in (("model", POINT_MODEL), ("loss", POINT_LOSS)):
        if _named(key, cfg[key]) != {"name": placeholder}:
            raise fail(key, f"must be left out for the test function {ds['name']!r} (its parameters are the "
                            "point, its loss the function)", cfg[key])
    if "batch_size" in (cfg.get("train") or {}):
        raise fail("train.batch_size", f"does not apply to the test function {ds['name']!r}: each step evaluates "
                                       "the function itself (no data, no batches)", cfg["train"]["batch_size"])
    problem = data.load_spec(ds, data_cache)
    return "function", problem.n_outputs, point_problem(problem.function, 0)[1]


def optimizer_parts(cfg: dict, data_cache: dict) -> str | None:
    """Which optimizer steps which tensors of a valid run's model, when it is not one
    optimizer over all of them (param groups, Muon): 'muon: 0.Linear.weight, ...; adamw: ...'."""
    opt_name, opt_options = split_named("optimizer", cfg["optimizer"], "optimizer")
    if not optimizers.groups.needs_parts(opt_name, opt_options):
        return None
    layout = _planned_model(cfg, data_cache)[2].layout
    return optimizers.groups.describe(optimizers.plan(opt_name, opt_options, layout), layout)


def validate_run(cfg: dict, data_cache: dict) -> tuple[str, int]:
    """Check one resolved run config against every constraint, without allocating its
    model; returns (task, n_outputs). Datasets loaded for the check stay in `data_cache`
    for the runs to reuse."""
    split = data.DATASETS.check(*split_named("dataset", cfg["dataset"], "dataset"))
    task, n_outputs, net = _planned_model(cfg, data_cache)
    opt_name, opt_options = split_named("optimizer", cfg["optimizer"], "optimizer")
    opt = optimizers.check(opt_name, opt_options)
    optimizers.plan(opt_name, opt_options, net.layout)  # param groups select tensors of this model
    nn.check_fits(net.n_params, show(cfg["model"]), opt.copies(), opt_name)
    tc = TrainConfig.of(cfg["train"])
    check_clipping(tc, opt_name)
    if tc.schedule is not None:
        s_name, s_options = split_named("train.schedule", tc.schedule, "schedule")
        schedules.build(s_name, opt.lr, tc.epochs, **s_options)
    if tc.early_stopping is not None:
        EarlyStopping(TASK_METRICS[task], **tc.early_stopping)
    if split["val_fraction"] == 0 and tc.watches_validation:
        raise fail("dataset.val_fraction", "must be > 0 when train.early_stopping or reduce_on_plateau watch "
                                           "the validation split", 0)
    return task, n_outputs


# ---------- the experiment ----------


def _named(section: str, value) -> dict:
    if isinstance(value, str):
        return {"name": value}
    if isinstance(value, dict):
        if "name" not in value:
            raise _Fail(f"{section}.name: missing: say which one, e.g. name: {EXAMPLE.get(section, '...')}, "
                        f"got {show(value)}")
        return copy.deepcopy(value)
    raise _Fail(f"{section}: must be a name or a mapping with a name, got {show(value)}")


def _set(cfg: dict, key: str, value) -> None:
    parts = key.split(".")
    section = parts[0]
    if len(parts) == 1:
        cfg[section] = _named(section, value) if section in NAMED else copy.deepcopy(value)
        return
    node = cfg[section]
    for part in parts[1:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise _Fail(f"{key}: points inside a value that is not a mapping, got {show(node)}")
    node[parts[-1]] = copy.deepcopy(value)


def _grids(grid, where="grid") -> list[dict]:
    if grid is None:
        return [{}]
    grids = grid if isinstance(grid, list) else [grid]
    if not grids:
        raise _Fail(f"{where}: must not be an empty list, got []")
    for i, g in enumerate(grids):
        at = f"{where}[{i}]" if isinstance(grid, list) else where
        if not isinstance(g, dict):
            raise _Fail(f"{at}: must be a mapping of dotted keys to lists of values, got {show(g)}")
        for key, values in g.items():
            _check_key(g, key, at, values)
            if not isinstance(values, list) or not values:
                raise _Fail(f"{at}.{key}: must be a non-empty list of values, got {show(values)}")
    return grids


def _check_key(g: dict, key, at: str, values, what: str = "a grid key") -> None:
    """A grid's or a search space's key: a dotted path into a section, not inside another key."""
    inside = [k for k in g if isinstance(k, str) and isinstance(key, str) and key.startswith(k + ".")]
    if inside:  # the sub-config would replace the whole section and drop this key silently
        raise _Fail(f"{at}.{key}: overlaps {at}.{inside[0]}, whose values replace the whole "
                    f"{inside[0]}; set {key[len(inside[0]) + 1:]} inside those values, got {show(values)}")
    if not isinstance(key, str) or key.split(".")[0] not in GRIDDABLE or "" in key.split("."):
        first = str(key).split(".")[0]
        raise _Fail(f"{at}.{key}: points nowhere: {what} starts with one of {list(GRIDDABLE)}, "
                    f"got {show(key)}{did_you_mean(first, GRIDDABLE)}")


def _searches(search, grids: list[dict]) -> list[tuple[str, dict]]:
    """(where, block) of the checked `search` blocks (a mapping, or a list of them: the
    union of their trials).
    A space key the grid also sets would be overwritten by one of them: refused. A grid
    key above it (grid `optimizer: [...]`, space `optimizer.lr`) is fine: the trial's
    value is set after the grid cell's."""
    if search is None:
        return []
    blocks = search if isinstance(search, list) else [search]
    if not blocks:
        raise _Fail("search: must not be an empty list, got []")
    out = []
    for i, raw in enumerate(blocks):
        at = f"search[{i}]" if isinstance(search, list) else "search"
        b = searching.block(raw, at)
        for (where, space), (_, given) in zip(searching.spaces(b), searching.spaces(raw)):
            for key in space:
                _check_key(space, key, f"{at}.{where}", space[key], "a search key")
                for g_key in (k for g in grids for k in g):
                    if g_key == key or g_key.startswith(key + "."):
                        raise _Fail(f"{at}.{where}.{key}: the grid sets {g_key} too; sweep it in the grid or "
                                    f"search it, not both, got {show(given[key])}")
        out.append((at, b))
    return out


def _cells(grids: list[dict], searches: list[tuple[str, dict]]):
    """(what a message calls it, its (dotted key, value) assignments) of each run config, in
    order; with a search, every grid cell × every trial of every space of every block."""
    trials = [("grid cell", {})]
    if searches:
        trials = [(f"{at}{'' if where == 'space' else '.' + where} trial {t}:", trial)
                  for at, b in searches for where, space in searching.spaces(b)
                  for t, trial in enumerate(searching.trials(space, b))]
    for grid in grids:
        keys = list(grid)
        for combo in itertools.product(*(grid[k] for k in keys)):
            for label, trial in trials:
                yield label, [*zip(keys, combo), *trial.items()]


def _flatten(prefix: str, value, out: dict) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}", v, out)
    else:
        out[prefix] = value


def build_experiment(raw: dict, source: str, default_name: str = "experiment") -> Experiment:
    try:
        return _experiment(raw, default_name)
    except (_Fail, LossbenchError) as e:
        raise ConfigError(f"{source}: {e}") from None


def _is_function(dataset) -> bool:
    """Whether a dataset section names a test function (rosenbrock, quadratic, ...)."""
    name = dataset.get("name") if isinstance(dataset, dict) else dataset
    return isinstance(name, str) and name in FUNCTIONS


def _point_sections(raw: dict) -> dict:
    """A test function's config leaves model and loss out (its parameters are the point,
    its loss the function): they resolve to `point` and `function`."""
    if not _is_function(raw.get("dataset")):
        return raw
    raw = dict(raw)
    for key, placeholder in (("model", POINT_MODEL), ("loss", POINT_LOSS)):
        value = raw.get(key)
        if value is not None and _named(key, value) != {"name": placeholder}:
            raise _Fail(f"{key}: a test function has no {key} (its parameters are the point, its loss is the "
                        f"function): leave {key} out, got {show(value)}")
        raw[key] = placeholder
    return raw


def _sections(raw: dict, default_name: str) -> tuple[str, dict, list[int]]:
    """The checked top level: (name, base run config, seeds)."""
    for key in raw:
        if key not in SECTIONS:
            raise _Fail(f"{key}: unknown section (sections are {', '.join(SECTIONS)}), got {show(raw[key])}"
                        f"{did_you_mean(key, SECTIONS)}")
    raw = _point_sections(raw)
    for key in REQUIRED:
        if raw.get(key) is None:
            raise _Fail(f"{key}: missing section: every config needs dataset, model, loss and optimizer, got nothing")
    name = raw.get("name", default_name)
    NAME.check("name", name)
    base = {s: _named(s, raw[s]) for s in NAMED}
    train = raw.get("train", {}) or {}
    if not isinstance(train, dict):
        raise _Fail(f"train: must be a mapping, got {show(train)}")
    base["train"] = copy.deepcopy(train)
    seeds = raw.get("seeds", [0])
    if isinstance(seeds, int) and not isinstance(seeds, bool) and seeds >= 0:  # 3 seeds, or seed 3? never guess
        several = f"[{', '.join(map(str, range(min(seeds, 5))))}{', ...' if seeds > 5 else ''}] for {seeds} seeds, or "
        raise fail("seeds", f"must be a list: {several if seeds > 1 else ''}[{seeds}] for seed {seeds}", seeds)
    SEEDS.check("seeds", seeds)
    return name, base, list(seeds)


@dataclass
class _Plan:
    runs: list[RunSpec] = field(default_factory=list)
    swept: list[str] = field(default_factory=list)
    cells: list[dict] = field(default_factory=list)
    tasks: dict = field(default_factory=dict)  # resolved run config (JSON) -> (task, n_outputs)
    datasets: dict = field(default_factory=dict)
    data: list[dict] = field(default_factory=list)  # distinct data.identity of the datasets


def _expand(base: dict, seeds: list[int], grids: list[dict], searches: list[tuple[str, dict]] = ()) -> _Plan:
    """Every grid cell (× search trial) × seed, each distinct run config validated once."""
    plan, seen = _Plan(), set()
    for label, assignments in _cells(grids, searches):
        cfg, cell = copy.deepcopy(base), {}
        for key, value in assignments:
            _set(cfg, key, value)
            _flatten(key, _named(key, value) if key in NAMED else value, cell)
        _validate_cell(cfg, cell, plan, label)
        if cell not in plan.cells:
            plan.cells.append(cell)
        plan.swept += [c for c in cell if c not in plan.swept]
        # the data by content, not by path: moved files resume, changed files never reuse a record
        named = {**cfg, "dataset": data.identity(cfg["dataset"])}
        if named["dataset"] not in plan.data:
            plan.data.append(named["dataset"])
        for seed in seeds:
            rid = run_id(named, seed)
            if rid not in seen:
                seen.add(rid)
                plan.runs.append(RunSpec(rid, seed, cfg, cell))
    return plan


def _validate_cell(cfg: dict, cell: dict, plan: _Plan, label: str = "grid cell") -> None:
    key = json.dumps(cfg, sort_keys=True, default=str)
    if key in plan.tasks:
        return
    try:
        plan.tasks[key] = validate_run(cfg, plan.datasets)
    except LossbenchError as e:  # a ConfigError, or a DataError from loading a CSV to check it
        where = f" ({label} {', '.join(f'{k}={show(v)}' for k, v in cell.items())})" if cell else ""
        raise _Fail(f"{e}{where}") from None


def _check_target(target, task: str, metrics: tuple) -> None:
    if target is None:
        return
    if not isinstance(target, dict):
        raise _Fail(f"target: must be a mapping {{metric: ..., value: ...}}, got {show(target)}")
    TARGET.check(target, "target")
    allowed = [*metrics, "train_loss"]
    if target["metric"] not in allowed:
        raise fail("target.metric", f"must be one of {allowed} for a {task} dataset", target["metric"], allowed)
    low, high = value_range(target["metric"])
    if not low <= target["value"] <= high:
        raise fail("target.value", f"must be a value {target['metric']} can reach, in [{low:g}, {high:g}]",
                   target["value"])


def _experiment(raw: dict, default_name: str) -> Experiment:
    name, base, seeds = _sections(raw, default_name)
    grids = _grids(raw.get("grid"))
    searches = _searches(raw.get("search"), grids)
    plan = _expand(base, seeds, grids, searches)
    if len({t for t, _ in plan.tasks.values()}) > 1:
        raise _Fail("grid: mixes classification and regression datasets; compare them in separate configs, "
                    f"got {show(raw.get('grid'))}")
    task = next(iter(plan.tasks.values()))[0]
    metrics = tuple(f"val_{m}" for m in TASK_METRICS[task])
    target = raw.get("target")
    _check_target(target, task, metrics)
    resolved = {"name": name, **base, "seeds": seeds}
    if raw.get("grid") is not None:
        resolved["grid"] = raw["grid"]
    if searches:
        blocks = [b for _, b in searches]
        resolved["search"] = blocks if isinstance(raw["search"], list) else blocks[0]
    if target is not None:
        resolved["target"] = target
    pruning = _pruning(raw["prune"], metrics, plan) if raw.get("prune") is not None else None  # null: off
    if pruning is not None:
        resolved["prune"] = raw["prune"]
    return Experiment(source="", name=name, config=resolved, runs=plan.runs, swept=plan.swept, target=target,
                      task=task, metrics=metrics, cells=plan.cells, datasets=plan.datasets, data=plan.data,
                      trials=sum(b["trials"] * len(searching.spaces(b)) for _, b in searches), prune=pruning,
                      searched=_searched(searches))


def _searched(searches: list) -> list[str]:
    """The keys the search blocks draw (prune's trials compete within the rest's cells)."""
    keys: dict[str, None] = {}
    for _, b in searches:
        for _, space in searching.spaces(b):
            keys.update(dict.fromkeys(space))
    return list(keys)


def _pruning(section, metrics: tuple, plan: _Plan) -> prune.Pruning:
    """The checked `prune` section; its metric needs a validation split to be measured on."""
    p = prune.check(section, metrics)
    longest = max(int(s.config["train"].get("epochs", 10)) for s in plan.runs)
    if not p.rungs(longest):
        raise fail("prune.grace_epochs", f"must be below train.epochs ({longest}) for a rung to prune at",
                   p.grace_epochs)
    for spec in {json.dumps(s.config["dataset"], sort_keys=True, default=str): s for s in plan.runs}.values():
        ds = spec.config["dataset"]
        if not _is_function(ds) and not len(data.load_spec(ds, plan.datasets).x_val):
            raise fail("prune.metric", f"is measured on the validation split, and dataset {ds['name']} has none: "
                                       "set dataset.val_fraction > 0", p.metric)
    return p


DICT_SOURCE = "config"  # how messages name a config given as a dict


def default_out(name: str) -> Path:
    """Where an experiment's results go unless told: results/<name>/."""
    return Path("results") / name


def load_experiment(path: str | Path | dict, overrides: list[str] | tuple = (),
                    without_grid: bool = False) -> Experiment:
    """Read (or take, for a dict: the parsed YAML), override, validate and expand a config;
    raises ConfigError (one line) on any problem. `without_grid`: the base config alone
    (lr-find of the optimizer an override names)."""
    if isinstance(path, dict):
        raw, source, stem = copy.deepcopy(path), DICT_SOURCE, "experiment"
    elif isinstance(path, (str, Path)):
        raw, source, stem = read_yaml(path), str(path), Path(path).stem
    else:
        raise fail("config", "must be a YAML file's path or a config dict", type(path).__name__)
    if without_grid:
        raw.pop("grid", None)
    try:
        raw = apply_overrides(raw, overrides)
    except _Fail as e:
        raise ConfigError(f"{source}: {e}") from None
    exp = build_experiment(raw, source, stem)
    exp.source = source
    return exp
