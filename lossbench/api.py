"""The library's front door: `lossbench.run(...)` and everything that reads results
directories back for the analysis (load, compare, plot). The one module that joins the
sweep layer (which writes results) to the analysis layer (which never reads files)."""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lossbench import data
from lossbench.analysis import plots
from lossbench.analysis.compare import (
    Comparison,
    Problem,
    aggregate,
    compare_problems,
    default_metric,
    parse_vs,
    versus,
)
from lossbench.engine import losses, nn, optimizers, schedules
from lossbench.engine.train import EARLY_STOPPING, TRAIN
from lossbench.errors import LossbenchError
from lossbench.registry import Choice, show, split_named
from lossbench.sweep import lrfind, prune, search, store
from lossbench.sweep.config import TARGET, default_out, load_experiment, optimizer_parts
from lossbench.sweep.execute import run_experiment
from lossbench.sweep.job import run_one
from lossbench.sweep.search import scales
from lossbench.sweep.spec import RunSpec
from lossbench.sweep.store import CONFIG, read_results, recorded
from lossbench.sweep.workers import cpu_count
from lossbench.sweep.yamlfile import read_yaml


@dataclass
class Results:
    dir: Path
    runs: pd.DataFrame  # runs.csv
    history: pd.DataFrame  # history.csv
    summary: pd.DataFrame  # one row per grid cell, seeds aggregated, best first
    metric: str | None = None  # what `summary` ranks on (None while no run has finished)
    target: dict | None = None  # the config's target, {"metric": ..., "value": ...}, if it has one
    planned: int = 0  # runs the experiment has; more than len(runs) while the sweep is unfinished


def run(config: str | Path | dict, out: str | Path | None = None, overrides: list[str] | tuple = (),
        on_event=None, *, workers: int | None = None, executor: str = "local", address: str | None = None,
        fresh: bool = False, retry_failed: bool = False, stack: str | int = "auto") -> Results:
    """Validate `config` (a YAML file, or a dict as the YAML would parse), train every run
    not yet recorded in `out` (default results/<name>/) and return the tables.

    workers: local processes (default one per core; 1 trains in this process).
    executor="dask" with address="tcp://HOST:8786" sends the runs to a Dask cluster.
    fresh: forget what `out` holds first. retry_failed: train runs recorded `failed` again.
    stack: "auto" trains runs of one small model together as one stacked model, "off" never,
    N at most N per stack; the numbers do not depend on it (times are shared).
    A KeyboardInterrupt propagates after every finished run is recorded.
    """
    exp = load_experiment(config, overrides)
    out_dir = Path(out) if out is not None else default_out(exp.name)
    run_experiment(exp, out_dir, on_event, workers=workers, executor=executor, address=address,
                   fresh=fresh, retry_failed=retry_failed, stack=stack)
    return load(out_dir)


@dataclass
class Plan:
    """What `run` would do: runs recorded and to train, and roughly how long it would take."""

    total: int
    recorded: int
    todo: int
    workers: int
    seconds: float | None  # estimated wall time of the runs to train; None if there are none
    basis: str  # where the estimate comes from
    parts: list[str]  # for runs with param groups or Muon: "model: which optimizer steps which tensors"
    prune: str = ""  # with `prune`: its rungs and the share of the epochs it trains at most


def plan(exp, out: str | Path, workers: int | None = None, fresh: bool = False, retry_failed: bool = False,
         probe: bool = True) -> Plan:
    """Count the runs already recorded in `out` and estimate the time the rest takes: from
    the recorded runs' times when there are some, else from one run trained for one epoch.
    Writes nothing."""
    ids = [s.run_id for s in exp.runs]
    recs = recorded(Path(out), ids) if Path(out).is_dir() else {}
    kept = {} if fresh else store.kept(recs, exp, retry_failed)
    todo = [s for s in exp.runs if s.run_id not in kept]
    n_workers = max(1, min(workers or cpu_count(), len(todo) or 1))
    seconds, basis = None, ""
    times = [r["wall_time_s"] for r in recs.values() if r["status"] == "ok" and r.get("wall_time_s")]
    if todo and times:
        seconds = sum(times) / len(times) * len(todo) / n_workers
        basis = f"from the {len(times)} recorded run{'s' * (len(times) != 1)}"
    elif todo and probe and data.available(todo[0].config["dataset"]):  # a probe never downloads
        seconds, basis = _probe(exp, todo)
        seconds = seconds / n_workers if seconds is not None else None
    share, line = _pruning(exp)
    if seconds is not None:
        seconds *= share
    return Plan(len(ids), len(ids) - len(todo), len(todo), n_workers, seconds, basis, _parts(exp), line)


MAX_PROBES = 6  # kinds of run timed by --dry-run: one epoch each


def _kind(spec: RunSpec) -> tuple[str, str]:
    """What a run's time per epoch depends on: (its data, model and batch size; its optimizer)."""
    cfg = spec.config
    return (json.dumps([cfg["dataset"], cfg["model"], cfg["train"].get("batch_size")], sort_keys=True, default=str),
            split_named("optimizer", cfg["optimizer"], "optimizer")[0])


def _probes(kinds: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """At most MAX_PROBES kinds, each in turn the one adding most models and optimizers not
    yet timed (Muon's steps cost several of SGD's; a CNN's epoch, many of an MLP's), ties
    to the first in the sweep."""
    chosen: list[tuple[str, str]] = []
    for _ in range(min(MAX_PROBES, len(kinds))):
        models, opts = {m for m, _ in chosen}, {o for _, o in chosen}
        rest = [k for k in kinds if k not in chosen]
        chosen.append(max(rest, key=lambda k: ((k[0] not in models) + (k[1] not in opts),
                                               -sum(m == k[0] for m, _ in chosen))))  # then the least timed model
    return chosen


def _probe(exp, todo: list[RunSpec]) -> tuple[float | None, str]:
    """(seconds the runs `todo` take one after another, where the figure comes from): one
    epoch of one run of each of a few kinds (_probes) times each run's epochs; a kind not
    timed costs the mean of the timed ones of its model (or of all)."""
    kinds: dict[tuple[str, str], list[RunSpec]] = {}
    for spec in todo:
        kinds.setdefault(_kind(spec), []).append(spec)
    per_epoch = {}
    for kind in _probes(list(kinds)):
        specs = kinds[kind]
        cfg = copy.deepcopy(specs[0].config)
        cfg["train"]["epochs"] = 1
        start = time.perf_counter()
        if run_one(RunSpec(specs[0].run_id, specs[0].seed, cfg, specs[0].cell), exp.datasets)["status"] != "failed":
            per_epoch[kind] = time.perf_counter() - start
    if not per_epoch:
        return None, ""
    def guess(kind: tuple[str, str]) -> float:
        same = [t for k, t in per_epoch.items() if k[0] == kind[0]] or list(per_epoch.values())
        return per_epoch.get(kind, sum(same) / len(same))

    seconds = sum(guess(_kind(s)) * s.config["train"].get("epochs", 10) for s in todo)
    if len(kinds) == 1:
        return seconds, "from one epoch of one run"
    return seconds, (f"from one epoch each of {len(per_epoch)} runs with different models or optimizers"
                     + (f", {len(per_epoch)} of the sweep's {len(kinds)}" if len(kinds) > len(per_epoch) else ""))


def _pruning(exp) -> tuple[float, str]:
    """(the share of the sweep's epochs that prune trains at most, a line saying so)."""
    if exp.prune is None:
        return 1.0, ""
    brackets = prune.brackets(exp.runs, exp.searched, exp.prune)
    pruned, full = prune.epochs_to_train(brackets)
    rungs = sorted({tuple(b.rungs) for b in brackets})
    where = ", ".join(map(str, rungs[0])) if len(rungs) == 1 else "that differ by bracket (train.epochs)"
    n = len(brackets)
    return pruned / full, (f"prune: at epochs {where} the best 1 in {exp.prune.reduction_factor} trials by "
                           f"{exp.prune.metric} go on ({n} bracket{'s' * (n != 1)}): at most {pruned:,} of "
                           f"{full:,} epochs train ({pruned / full:.0%})")


def _parts(exp) -> list[str]:
    """The distinct ways the runs split their models between optimizers, if any does."""
    lines: dict[str, None] = {}
    for spec in exp.runs:
        parts = optimizer_parts(spec.config, exp.datasets)
        if parts is not None:
            lines[f"{show(spec.config['model'])}: {parts}"] = None
    return list(lines)


def load(directory: str | Path) -> Results:
    """The tables of a finished (or partly finished) results directory; `summary` ranks
    the grid cells on the config's target metric (or the first validation metric)."""
    runs, history, man = read_results(directory)
    if runs.empty:  # interrupted before any run finished: empty tables, not an error
        return Results(Path(directory), runs, history, pd.DataFrame(), None, man.get("target"),
                       len(man.get("run_ids") or []))
    p = _problem(directory, runs, history, man)
    metric = default_metric(p)
    summary = aggregate(p, [k for k in p.swept if k in p.runs.columns], metric, p.target["value"] if p.target else None)
    return Results(Path(directory), p.runs, p.history, summary, metric, p.target, p.planned)


def load_problem(directory: str | Path) -> Problem:
    """One results directory as a problem to compare; it must hold at least one run."""
    runs, history, man = read_results(directory)
    if runs.empty:
        raise LossbenchError(f"{directory}: no run has finished yet; nothing to compare")
    return _problem(directory, runs, history, man)


def _problem(directory: str | Path, runs: pd.DataFrame, history: pd.DataFrame, man: dict) -> Problem:
    # named as the user sees it: the results directory (results/<config name>/ by default)
    config = Path(directory) / CONFIG
    searched = scales(read_yaml(config).get("search")) if config.is_file() else {}
    return Problem(Path(directory).resolve().name, Path(directory), runs, history, list(man.get("swept") or []),
                   man.get("target"), len(man.get("run_ids") or runs), searched)


def load_problems(dirs: list[str | Path]) -> list[Problem]:
    """Each results directory once, with names that tell them apart."""
    resolved = [Path(d).resolve() for d in dirs]
    for d in resolved:
        if resolved.count(d) > 1:
            raise LossbenchError(f"{d}: given twice; each results directory is one problem")
    problems = [load_problem(d) for d in dirs]
    names = [p.name for p in problems]
    for p in problems:
        if names.count(p.name) > 1:  # same-named directories (e.g. from two machines): tell them apart
            p.name = str(p.dir)
    return problems


def compare(dirs: list[str | Path], by: list[str] | None = None, metric: str | None = None,
            target: float | None = None, *, vs: dict[str, str] | list[str] | None = None, alpha: float = 0.05,
            resamples: int = 2000, seed: int = 0) -> Comparison:
    """The comparison of one or more results directories; see analysis.compare.compare_problems.
    With `vs` ({"optimizer.name": "sgd"} or ["optimizer.name=sgd"]), `.versus` holds each
    group against that baseline on paired seeds (analysis.compare.versus)."""
    problems = load_problems(dirs)
    comparison = compare_problems(problems, by, metric, target, resamples, seed)
    if vs:
        items = [f"{k}={v}" for k, v in vs.items()] if isinstance(vs, dict) else list(vs)
        comparison.versus = versus(problems, comparison, parse_vs(items, comparison.keys), alpha, resamples, seed)
    return comparison


def plot(dirs: list[str | Path], kind: str = "all", metric: str | None = None, by: list[str] | None = None,
         out: str | Path | None = None, log: bool = False, cost: str = "time_to_target",
         tolerance: float = 0.05, target: float | None = None, animate: str | Path | None = None,
         hp: str = "optimizer.lr") -> Path:
    """Draw `kind` (see analysis.plots.plot; `path`: analysis.paths, and `animate` a GIF
    or MP4 of it) for the results in `dirs`; returns the file written. `hp`: the key
    --kind hp puts on the x axis."""
    plots.check_kind(kind, len(dirs))  # before reading anything
    if kind == "path":
        return _plot_path(dirs[0], out, animate)
    if animate is not None:
        raise LossbenchError("--animate: draws --kind path only")
    return plots.plot(load_problems(dirs), kind, metric, by, out, log, cost, tolerance, target, hp)


def _plot_path(directory: str | Path, out, animate) -> Path:
    """The paths over the test functions' contours (analysis.paths); a GIF or MP4 too
    with `animate` (its file)."""
    from lossbench.analysis import paths  # matplotlib, the plot extra: only when drawing

    p = load_problem(directory)
    base = read_yaml(Path(directory) / CONFIG)["dataset"]
    swept = [k for k in p.swept if k.startswith("dataset.")]
    loaded: dict = {}

    def function_of(run):
        """The run's test function: the config's dataset with the run's swept options."""
        spec = {} if "dataset.name" in swept else dict(base)  # another function: none of the base's options
        for k in swept:
            if pd.notna(run[k]) and run[k] != "-":  # "-": another grid's run has no such option
                value = run[k]
                spec[k.split(".", 1)[1]] = json.loads(value) if isinstance(value, str) and value[:1] in "[{" else value
        problem = data.load_spec(spec, loaded)  # each distinct dataset once
        if problem.function is None:
            raise LossbenchError(f"--kind path: {directory} trained on {problem.name}, not a test function "
                                 "(rosenbrock, beale, branin, saddle, quadratic): there is no path to draw")
        return problem.function

    path = Path(out) if out is not None else p.dir / "plot-path.png"
    plots.save(paths.figure(p, function_of)[0], path)
    if animate is not None:
        paths.animate(p, function_of, Path(animate))
    return path


def lr_find(config: str | Path | dict, overrides: list[str] | tuple = (), *, start: float = 1e-7, end: float = 10.0,
            steps: int = 100, suggest: tuple[str, ...] = ("valley",)) -> lrfind.Report:
    """The learning-rate range test of each optimizer in `config` (engine.lrfind, on the
    config's dataset, model, loss and batch size, first seed); `.tested[i].result` holds
    the curve and the suggestions (fastai's valley, steep, minimum), `.grid()` a grid.
    An override of the optimizer section (`optimizer.name=adam`) tests that optimizer alone."""
    lrfind.check_range(start, end, steps, suggest)
    named = any(o.split("=", 1)[0].strip().split(".")[0] == "optimizer" for o in overrides)
    return lrfind.run(load_experiment(config, overrides, without_grid=named), start, end, steps, suggest,
                      base_only=named)


def landscape(directory: str | Path, runs: list[str] | None = None, by: list[str] | None = None,
              kind: str = "line", samples: int | None = None, resolution: int = 51, seed: int = 0,
              out: str | Path | None = None):
    """The loss landscape of a recorded run (sweep.landscape.landscape), drawn to `out`
    (default RESULTS_DIR/landscape-KIND.png): (the Landscape, the file written)."""
    from lossbench.sweep.landscape import landscape as compute

    land = compute(directory, runs, by, kind, samples, resolution, seed)
    return land, plots.draw_landscape(land, out or Path(directory) / f"landscape-{kind}.png")


# What can be named in a config: `lossbench list` shows each registry's items, their
# options with defaults and allowed ranges, and their one-sentence summaries.
# (Layers have a registry too, but a config names them only through a model's options.)
REGISTRIES = {
    "datasets": data.DATASETS,
    "models": nn.MODELS,
    "losses": losses.LOSSES,
    "optimizers": optimizers.OPTIMIZERS,
    "schedules": schedules.SCHEDULES,
}
SECTIONS = {  # the config sections that are options rather than named items
    "train": (TRAIN, "How each run trains: epochs, batches, schedule, clipping, early stopping."),
    "train.early_stopping": (EARLY_STOPPING, "Stop a run when a validation metric stops improving."),
    "target": (TARGET, "The value of a metric that counts as reached, for the to-target columns and ranks."),
    "search": (search.BLOCK, "Trials drawn from a space (a Halton sequence or random), beside or instead of grid."),
    "search.space.KEY": (search.RANGE, "A searched key's range; a list instead is a choice among its values."),
    "prune": (prune.PRUNE, "Successive halving: at epochs grace·rf^k, the best 1/rf of the trials go on."),
}
KINDS = Choice(*REGISTRIES, "train")


def catalog(kind: str) -> list[tuple[str, dict, str]]:
    """(name, {option: 'default (allowed range)'}, one-sentence summary) per item of `kind`."""
    KINDS.check("list KIND", kind)
    if kind == "train":
        return [(name, schema.describe(), doc) for name, (schema, doc) in SECTIONS.items()]
    reg = REGISTRIES[kind]
    return [(name, reg.schema(name).describe(), reg.doc(name).split("\n")[0]) for name in reg.names()]
