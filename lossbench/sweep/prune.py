"""Successive halving (`prune:` in a config): stop hopeless trials early.

    prune: {metric: val_accuracy, grace_epochs: 1, reduction_factor: 4}

A *trial* is one cell of the sweep (all its seeds together: they are pruned or kept as
one, so paired comparisons over seeds stay paired). Trials compete within their
*bracket*: the cells that differ only in searched keys (`search:`), or, without a
search, the whole grid. Rungs sit at epochs grace·rf^k below train.epochs. At each rung
a trial's score is the mean over its seeds of the metric at that epoch (a diverged seed
counts as the worst value); the best max(1, n // rf) trials of the n competing go on,
and the runs of the others stop, recorded `pruned` with their history so far.

Rungs are synchronous: every run of a rung finishes before its decision, which depends
only on recorded numbers, so the results do not depend on the number of workers, on
completion order, or on a kill and resume (the decisions are recomputed from the records).
A run that goes on trains again from its start to the next rung: the same seed gives the
same first epochs, so no state has to be kept between rungs, at the price of repeating
them (with reduction factor 4 about a fifth more epochs than keeping checkpoints).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

from lossbench.engine.metrics import higher_is_better
from lossbench.registry import Int, Schema, Text, fail
from lossbench.sweep.spec import RunSpec


@dataclass(frozen=True)
class Pruning:
    """The checked `prune` section."""

    metric: str = "val_loss"
    grace_epochs: int = 1
    reduction_factor: int = 4

    def rungs(self, epochs: int) -> list[int]:
        """The epochs at which a run of `epochs` epochs may be pruned."""
        out, e = [], self.grace_epochs
        while e < epochs:
            out.append(e)
            e *= self.reduction_factor
        return out


PRUNE = Schema.of(Pruning, owner="prune", metric=Text(), grace_epochs=Int(ge=1), reduction_factor=Int(ge=2))


def check(section, metrics: tuple[str, ...]) -> Pruning:
    """The `prune` section as a Pruning; one-line errors name the key."""
    if not isinstance(section, dict):
        raise fail("prune", "must be a mapping {metric: ..., grace_epochs: ..., reduction_factor: ...}", section)
    p = Pruning(**PRUNE.check(section, "prune"))
    if p.metric not in metrics:
        raise fail("prune.metric", f"must be a validation metric of this dataset, one of {list(metrics)}",
                   p.metric, list(metrics))
    return p


def _epochs(spec: RunSpec) -> int:
    return int((spec.config.get("train") or {}).get("epochs", 10))


@dataclass
class Bracket:
    """Trials that compete: trial key -> its runs, in sweep order; the rungs they share."""

    trials: dict[str, list[RunSpec]]
    rungs: list[int]
    reduction_factor: int


def brackets(runs: list[RunSpec], searched: list[str], p: Pruning) -> list[Bracket]:
    """The sweep's runs as brackets of trials: one per grid cell when there is a search,
    else one for the whole grid. Rungs come from the bracket's shortest run."""
    out: dict[str, dict[str, list[RunSpec]]] = {}
    for spec in runs:
        fixed = {k: v for k, v in spec.cell.items() if not any(k == s or k.startswith(s + ".") for s in searched)} \
            if searched else {}
        b = out.setdefault(json.dumps(fixed, sort_keys=True, default=str), {})
        b.setdefault(json.dumps(spec.cell, sort_keys=True, default=str), []).append(spec)
    return [Bracket(trials, p.rungs(min(_epochs(s) for t in trials.values() for s in t)), p.reduction_factor)
            for trials in out.values()]


PENDING = None  # a run of the rung that has not finished it


def _at(record: dict | None, epoch: int, metric: str, up: bool) -> tuple[float | None, bool]:
    """(a run's value at the rung at `epoch`, whether it was still training there). The
    value is the metric at that epoch, or at its last one if it stopped on its own earlier;
    the worst value if it diverged; NaN (missing) if it failed; PENDING if not there yet."""
    history = (record or {}).get("history") or []
    if record is None or (record.get("paused") and len(history) < epoch):
        return PENDING, True
    worst = -math.inf if up else math.inf
    if record["status"] in ("failed", "diverged"):
        return (math.nan if record["status"] == "failed" else worst), False
    rows = [r for r in history if r["epoch"] <= epoch]
    v = rows[-1].get(metric) if rows else None
    return (float(v) if v is not None and math.isfinite(v) else worst), len(history) >= epoch


def _score(values: list[float], up: bool) -> float:
    """A trial's score: the mean over its seeds (failed ones left out)."""
    known = [v for v in values if not math.isnan(v)]
    return sum(known) / len(known) if known else (-math.inf if up else math.inf)


def decide(bracket: Bracket, k: int, records: dict[str, dict], p: Pruning) -> tuple[list[str], list[str]] | None:
    """(trials kept, trials pruned) at the bracket's rung k, replaying the rungs before it
    from `records` (run id -> final or paused record); None while a run of a competing
    trial has not finished the rung."""
    up = higher_is_better(p.metric)
    alive = list(bracket.trials)
    for j in range(k + 1):
        epoch = bracket.rungs[j]
        at = {t: [_at(records.get(s.run_id), epoch, p.metric, up) for s in bracket.trials[t]] for t in alive}
        competing = [t for t in alive if any(live for _, live in at[t])]
        if any(v is PENDING for t in competing for v, _ in at[t]):
            return None
        scores = {t: _score([v for v, _ in at[t]], up) for t in competing}
        order = sorted(competing, key=lambda t: -scores[t] if up else scores[t])  # stable: sweep order breaks ties
        keep = order[: max(1, len(order) // p.reduction_factor)]
        if j == k:
            return keep, [t for t in competing if t not in keep]
        alive = keep
    return None


@dataclass
class Phase:
    """What the sweep does next: train `todo` (each spec carries its budget: the epoch of its
    rung, or None to the end) and record the runs of `pruned` (paused records) as pruned."""

    todo: list[RunSpec]
    pruned: list[dict]
    decisions: list[tuple[int, int, int]]  # (rung epoch, trials kept, trials pruned), decided just now


def next_phase(brackets_: list[Bracket], records: dict[str, dict], p: Pruning, done: set[str]) -> Phase:
    """The next step of every bracket, from the records alone (run id -> final or paused
    record; `done`: the run ids whose record is final). A bracket waits at its first
    undecided rung for its runs to reach it; past its last rung, its survivors train to the end."""
    phase = Phase([], [], [])
    for b in brackets_:
        alive = list(b.trials)
        for k, epoch in enumerate(b.rungs):
            d = decide(b, k, records, p)
            if d is None:
                phase.todo += [_budget(s, epoch) for t in alive for s in b.trials[t]
                               if _at(records.get(s.run_id), epoch, p.metric, True)[0] is PENDING]
                break
            keep, pruned = d
            stopped = [records[s.run_id] for t in pruned for s in b.trials[t] if s.run_id not in done]
            if stopped:
                phase.pruned += [{**{k: v for k, v in r.items() if k != "paused"}, "status": "pruned",
                                  "prune": asdict(p)} for r in stopped]  # decided under these settings
                phase.decisions.append((epoch, len(keep), len(pruned)))
            alive = keep
        else:
            phase.todo += [s for t in alive for s in b.trials[t] if s.run_id not in done]
    return phase


def _budget(spec: RunSpec, epoch: int) -> RunSpec:
    return RunSpec(spec.run_id, spec.seed, spec.config, spec.cell, budget=epoch)


def epochs_to_train(brackets_: list[Bracket]) -> tuple[int, int]:
    """(epochs the sweep trains with pruning when no run stops on its own, epochs without):
    each rung's trials train from the start to it; the survivors of the last to the end."""
    pruned = full = 0
    for b in brackets_:
        trials = list(b.trials.values())
        full += sum(_epochs(s) for t in trials for s in t)
        for epoch in b.rungs:
            pruned += epoch * sum(len(t) for t in trials)
            trials = trials[: max(1, len(trials) // b.reduction_factor)]
        pruned += sum(_epochs(s) for t in trials for s in t)
    return pruned, full
