"""Experiment configs: read YAML, apply --set overrides, validate, expand the grid.

Everything is checked before anything trains. Every error is a ConfigError whose
message is one line: `<file>: <dotted.key>: <what is wrong>, got <value>`.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import itertools
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lossbench.errors import ConfigError, LossbenchError
from lossbench.sweep.spec import RunSpec, run_id
from lossbench.registry import did_you_mean

SECTIONS = ("name", "dataset", "model", "loss", "optimizer", "train", "seeds", "grid", "target")
REQUIRED = ("dataset", "model", "loss", "optimizer")
NAMED = ("dataset", "model", "loss", "optimizer")  # sections that are `name` or {name: ..., ...}
GRIDDABLE = ("dataset", "model", "loss", "optimizer", "train")
DATASET_COMMON = {"val_fraction": 0.1, "normalize": "standard", "limit": None, "seed": 0}
SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# Tasks known without loading the data; the others are loaded (cheaply) to find out.
STATIC_TASK = {"mnist": ("classification", 10), "fashion_mnist": ("classification", 10)}


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


class _Fail(Exception):
    """A problem at a dotted key; the caller adds the file name."""

    def __init__(self, key: str, msg: str):
        super().__init__(f"{key}: {msg}" if key else msg)


def _show(v: Any) -> str:
    return repr(v) if isinstance(v, str) else json.dumps(v, default=str)


# ---------- reading ----------


def read_yaml(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.constructor.ConstructorError as e:
        where = f" at line {e.problem_mark.line + 1}" if e.problem_mark else ""
        raise ConfigError(f"{path}: YAML tags such as {e.problem.split()[-1] if e.problem else '!!'} are not allowed{where}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    except (UnicodeDecodeError, OSError) as e:
        raise ConfigError(f"{path}: cannot read the file: {e}") from None
    if raw is None:
        raise ConfigError(f"{path}: the file is empty; it needs at least dataset, model, loss and optimizer")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got a {type(raw).__name__}")
    return raw


def apply_overrides(raw: dict, overrides: list[str] | tuple = ()) -> dict:
    """`--set optimizer.lr=0.1`: the value is parsed as YAML (numbers, lists, mappings)."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise _Fail("--set", f"expected key=value, got {item!r}")
        key, text = (s.strip() for s in item.split("=", 1))
        try:
            value = yaml.safe_load(text) if text else None
        except yaml.YAMLError:
            value = text
        parts = key.split(".")
        if parts[0] == "grid" and len(parts) > 2:  # grid keys are dotted paths themselves
            parts = ["grid", ".".join(parts[1:])]
        node = raw
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if isinstance(child, str) and i == 0 and part in NAMED:
                child = {"name": child}  # `loss: mse` + `--set loss.delta=1` -> {name: mse, delta: 1}
            if child is None:
                child = {}
            if not isinstance(child, dict):
                raise _Fail("--set", f"{'.'.join(parts[: i + 1])} is not a mapping, cannot set {key}")
            node[part] = child
            node = child
        node[parts[-1]] = value
    return raw


# ---------- validation of one resolved run ----------


def _number(key: str, v, integer=False) -> None:
    ok = isinstance(v, int) if integer else isinstance(v, (int, float))
    if isinstance(v, bool) or not ok:
        raise _Fail(key, f"must be {'an integer' if integer else 'a number'}, got {_show(v)}")
    if not integer and not math.isfinite(v):
        raise _Fail(key, f"must be a finite number, got {_show(v)}")


def _check_types(section: str, registry, name: str, options: dict) -> None:
    """Types implied by each hyperparameter's default: a float default takes a number,
    a bool default true/false, a tuple default a list of numbers."""
    params = registry.hyperparams(name)
    for key, value in options.items():
        if key not in params:
            continue  # the registry's check names unknown keys with a hint
        default, where = params[key], f"{section}.{key}"
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise _Fail(where, f"must be true or false, got {_show(value)}")
        elif isinstance(default, (int, float)):
            _number(where, value)  # integer-only options check that themselves
        elif isinstance(default, tuple) and all(isinstance(d, (int, float)) for d in default):
            if not isinstance(value, list) and not (key == "hidden" and isinstance(value, int)):
                raise _Fail(where, f"must be a list of numbers, got {_show(value)}")
            value = value if isinstance(value, list) else [value]
            for i, v in enumerate(value):
                _number(f"{where}[{i}]", v)
        elif default is inspect.Parameter.empty or default is None:
            continue
        elif isinstance(default, str) and not isinstance(value, str):
            raise _Fail(where, f"must be a string, got {_show(value)}")


def _build(section: str, registry, spec: dict, build) -> Any:
    name = spec.get("name")
    if not isinstance(name, str):
        raise _Fail(f"{section}.name", f"must be a string naming a {registry.kind}, got {_show(name)}")
    options = {k: v for k, v in spec.items() if k != "name"}
    try:
        registry.get(name)
        _check_types(section, registry, name, options)
        registry.check_kwargs(name, options)
        return build(name, options)
    except ConfigError as e:
        msg = str(e)
        raise _Fail("" if msg.startswith(f"{section}.") else section, msg) from None


def validate_run(cfg: dict, data_cache: dict) -> tuple[str, int]:
    """Check one resolved run config by building what it names; returns (task, n_outputs).
    Datasets loaded for the check stay in `data_cache` for the runs to reuse."""
    import numpy as np

    from lossbench import data

    from lossbench.engine import losses, nn, optimizers, schedules
    from lossbench.engine.metrics import TASK_METRICS
    from lossbench.engine.train import TrainConfig, _EarlyStopping, encode_targets

    ds = cfg["dataset"]
    ds_name = ds.get("name")
    if not isinstance(ds_name, str):
        raise _Fail("dataset.name", f"must be a string naming a dataset, got {_show(ds_name)}")
    try:
        data.DATASETS.get(ds_name)
    except ConfigError as e:
        raise _Fail("dataset", str(e)) from None
    options = {k: v for k, v in ds.items() if k not in ("name", *DATASET_COMMON)}
    common = {k: ds.get(k, d) for k, d in DATASET_COMMON.items()}
    try:
        data.DATASETS.check_kwargs(ds_name, options)
        data._check_common(common["seed"], common["val_fraction"], common["normalize"], common["limit"])
        if ds_name in STATIC_TASK:
            task, n_out = STATIC_TASK[ds_name]
            if options.get("mirrors") is not None:
                from lossbench.data.idx import parse_mirrors

                parse_mirrors(options["mirrors"])
        else:  # synthetic and CSV data load in well under a second: load to check
            loaded = data.load_spec(ds, data_cache)
            task, n_out = loaded.task, loaded.n_outputs
    except LossbenchError as e:
        msg = str(e)
        raise _Fail("" if msg.startswith("dataset") else "dataset", msg) from None

    _build("model", nn.MODELS, cfg["model"], lambda n, o: nn.build(n, 2, 2, **o))
    loss = _build("loss", losses.LOSSES, cfg["loss"], lambda n, o: losses.build(n, **o))
    _build("optimizer", optimizers.OPTIMIZERS, cfg["optimizer"],
           lambda n, o: optimizers.build(n, [np.zeros(1, np.float32)], **o))

    train = cfg["train"]
    known = set(inspect.signature(TrainConfig).parameters)
    for key in train:
        if key not in known:
            raise _Fail(f"train.{key}", f"unknown key{did_you_mean(key, known)}; train takes {sorted(known)}")
    try:
        tc = TrainConfig(**train)
        if tc.schedule is not None:
            sched = tc.schedule if isinstance(tc.schedule, dict) else {"name": tc.schedule}
            _build("train.schedule", schedules.SCHEDULES, sched, lambda n, o: schedules.build(n, 0.1, tc.epochs, **o))
        if tc.early_stopping is not None:
            if not isinstance(tc.early_stopping, dict):
                raise _Fail("train.early_stopping", f"must be a mapping, got {_show(tc.early_stopping)}")
            _EarlyStopping(TASK_METRICS[task], **tc.early_stopping)
        fake = type("D", (), {"task": task, "n_outputs": n_out, "name": ds_name})
        encode_targets(loss, cfg["loss"]["name"], fake)
    except TypeError as e:
        raise _Fail("train", str(e)) from None
    except ConfigError as e:
        raise _Fail("", str(e)) from None
    return task, n_out


# ---------- the experiment ----------


def _named(section: str, value) -> dict:
    if isinstance(value, str):
        return {"name": value}
    if isinstance(value, dict):
        if "name" not in value:
            raise _Fail(f"{section}.name", "missing: say which one, e.g. name: " + {
                "dataset": "moons", "model": "mlp", "loss": "cross_entropy", "optimizer": "adam"}.get(section, "..."))
        return copy.deepcopy(value)
    raise _Fail(section, f"must be a name or a mapping with a name, got {_show(value)}")


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
            raise _Fail(key, "points inside a value that is not a mapping")
    node[parts[-1]] = copy.deepcopy(value)


def _grids(grid, where="grid") -> list[dict]:
    if grid is None:
        return [{}]
    grids = grid if isinstance(grid, list) else [grid]
    if not grids:
        raise _Fail(where, "must not be an empty list")
    for i, g in enumerate(grids):
        at = f"{where}[{i}]" if isinstance(grid, list) else where
        if not isinstance(g, dict):
            raise _Fail(at, f"must be a mapping of dotted keys to lists of values, got {_show(g)}")
        for key, values in g.items():
            if not isinstance(key, str) or key.split(".")[0] not in GRIDDABLE or "" in key.split("."):
                first = str(key).split(".")[0]
                raise _Fail(f"{at}.{key}", f"points nowhere: a grid key starts with one of {list(GRIDDABLE)}"
                            f"{did_you_mean(first, GRIDDABLE)}")
            if not isinstance(values, list) or not values:
                raise _Fail(f"{at}.{key}", f"must be a non-empty list of values, got {_show(values)}")
    return grids


def _flatten(prefix: str, value, out: dict) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}", v, out)
    else:
        out[prefix] = value


def _seeds(value) -> list[int]:
    seeds = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(seeds, list) or not seeds:
        raise _Fail("seeds", f"must be a non-empty list of integers, got {_show(value)}")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise _Fail("seeds", f"must be integers >= 0, got {_show(s)}")
    if len(set(seeds)) != len(seeds):
        raise _Fail("seeds", f"must not repeat, got {_show(seeds)}")
    return seeds


def build_experiment(raw: dict, source: str, default_name: str = "experiment") -> Experiment:
    try:
        return _experiment(raw, default_name)
    except _Fail as e:
        raise ConfigError(f"{source}: {e}") from None


def _experiment(raw: dict, default_name: str) -> Experiment:
    from lossbench.engine.metrics import TASK_METRICS

    for key in raw:
        if key not in SECTIONS:
            raise _Fail(str(key), f"unknown section{did_you_mean(key, SECTIONS)}; sections are {list(SECTIONS)}")
    for key in REQUIRED:
        if raw.get(key) is None:
            raise _Fail(key, "missing section: every config needs dataset, model, loss and optimizer")
    name = raw.get("name", default_name)
    if not isinstance(name, str) or not SLUG.match(name) or ".." in name:
        raise _Fail("name", f"must be a plain name of letters, digits, '.', '_' or '-' (no '/', no '..'), got {_show(name)}")
    base = {s: _named(s, raw[s]) for s in NAMED}
    train = raw.get("train", {}) or {}
    if not isinstance(train, dict):
        raise _Fail("train", f"must be a mapping, got {_show(train)}")
    base["train"] = copy.deepcopy(train)
    seeds = _seeds(raw.get("seeds", [0]))
    grids = _grids(raw.get("grid"))

    runs, swept, cells, seen = [], [], [], set()
    data_cache: dict = {}
    checked: dict[str, tuple] = {}
    task_info = None
    for grid in grids:
        keys = list(grid)
        for combo in itertools.product(*(grid[k] for k in keys)):
            cfg = copy.deepcopy(base)
            cell: dict = {}
            for key, value in zip(keys, combo):
                _set(cfg, key, value)
                _flatten(key, _named(key, value) if key in NAMED else value, cell)
            ckey = json.dumps(cfg, sort_keys=True, default=str)
            if ckey not in checked:
                try:
                    checked[ckey] = validate_run(cfg, data_cache)
                except _Fail as e:
                    where = f" (grid cell {', '.join(f'{k}={_show(v)}' for k, v in cell.items())})" if cell else ""
                    raise _Fail("", f"{e}{where}") from None
            task_info = task_info or checked[ckey]
            if cell not in cells:
                cells.append(cell)
            for c in cell:
                if c not in swept:
                    swept.append(c)
            for seed in seeds:
                rid = run_id(cfg, seed)
                if rid not in seen:
                    seen.add(rid)
                    runs.append(RunSpec(rid, seed, cfg, cell))
    tasks = {t for t, _ in checked.values()}
    if len(tasks) > 1:
        raise _Fail("grid", "mixes classification and regression datasets; compare them in separate configs")
    task = task_info[0]
    metrics = tuple(f"val_{m}" for m in TASK_METRICS[task])
    target = raw.get("target")
    if target is not None:
        allowed = [*metrics, "train_loss"]
        if not isinstance(target, dict):
            raise _Fail("target", f"must be a mapping {{metric: ..., value: ...}}, got {_show(target)}")
        for key in target:
            if key not in ("metric", "value"):
                raise _Fail(f"target.{key}", f"unknown key{did_you_mean(key, ['metric', 'value'])}; target takes metric and value")
        if target.get("metric") not in allowed:
            raise _Fail("target.metric", f"must be one of {allowed} for a {task} dataset, got {_show(target.get('metric'))}"
                        f"{did_you_mean(target.get('metric'), allowed)}")
        _number("target.value", target.get("value"))
    resolved = {"name": name, **base, "seeds": seeds}
    if raw.get("grid") is not None:
        resolved["grid"] = raw["grid"]
    if target is not None:
        resolved["target"] = target
    return Experiment(source="", name=name, config=resolved, runs=runs, swept=swept, target=target,
                      task=task, metrics=metrics, cells=cells, datasets=data_cache)


def load_experiment(path: str | Path, overrides: list[str] | tuple = ()) -> Experiment:
    """Read, override, validate and expand `path`; raises ConfigError (one line) on any problem."""
    raw = read_yaml(path)
    try:
        raw = apply_overrides(raw, overrides)
    except _Fail as e:
        raise ConfigError(f"{path}: {e}") from None
    exp = build_experiment(raw, str(path), Path(path).stem)
    exp.source = str(path)
    return exp
