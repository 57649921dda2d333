"""Comparing groups of runs across seeds, from the result tables alone.

One row per group (by default a grid cell): final and best metric as mean, std and a 95%
t-interval over the seeds; epochs, steps and seconds to a target (median over the seeds
that reached it, and the fraction of all runs that did); the area under the loss curve;
status counts and a rank. Figures come only from `ok` runs, so diverged and failed runs
count against a group (they never reach the target) but never make it look good.
Everything is NaN-safe: a group with no usable run gets NaN figures and no rank.

Beside the mean, robust figures over seeds (analysis/stats.py): the median and the
interquartile mean (IQM) with a stratified percentile-bootstrap interval, of the figure the
rank uses (each run's best epoch for history metrics, the final value for test metrics).
These count a diverged run as the worst outcome, not as missing (a failed run is missing):
a median or IQM that lands on a diverged run is shown as "diverged". `versus` compares
each group with a baseline group on paired seeds.

Also: performance profiles across several results directories (Dolan & Moré, as in
AlgoPerf) and learning-rate sensitivity.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lossbench.analysis import stats
from lossbench.engine.metrics import first_hit, higher_is_better
from lossbench.errors import LossbenchError

# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def t975(df: int) -> float:
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964  # Cornish-Fisher expansion around the normal quantile; < 1e-4 off beyond 30 df
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def mean_std_ci(values) -> tuple[float, float, float, float]:
    """(mean, sample std, ci_low, ci_high) of the finite values; std and interval need two."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if len(v) == 0:
        return (math.nan,) * 4
    m = float(v.mean())
    if len(v) < 2:
        return m, math.nan, math.nan, math.nan
    s = float(v.std(ddof=1))
    h = t975(len(v) - 1) * s / math.sqrt(len(v))
    return m, s, m - h, m + h


@dataclass
class Problem:
    """One results directory, as read back (lossbench.api.load_problem builds it)."""

    name: str
    dir: Path
    runs: pd.DataFrame
    history: pd.DataFrame
    swept: list[str]
    target: dict | None
    planned: int = 0  # runs the experiment has; more than len(runs) while a sweep is partial
    searched: dict = field(default_factory=dict)  # key -> 'linear'|'log'|'choice': how a search drew it


def check_metric(p: Problem, metric: str) -> None:
    """A metric the results do not hold is an error, not a table of dashes."""
    higher_is_better(metric)
    have = [c for c in p.history.columns if c == "train_loss" or c.startswith("val_")] + \
        [c for c in p.runs.columns if c.startswith("test_")]
    if metric not in have:
        raise LossbenchError(f"--metric: {p.dir} has no {metric!r}; it has {', '.join(have)}")


def default_metric(p: Problem) -> str:
    if p.target:
        return p.target["metric"]
    for c in p.history.columns:
        if c.startswith("val_") and c != "val_loss" and p.history[c].notna().any():
            return c
    return "val_loss"


def per_run(p: Problem, metric: str, target: float | None) -> pd.DataFrame:
    """One row per run: final and best of `metric`, epochs/steps/seconds to `target`, the
    area under the loss curve (val_loss, or train_loss without a validation split),
    trapezoidal over epochs and divided by their span: the mean loss level of the run,
    and the run's val_loss curve."""
    up = higher_is_better(metric)
    rows = []
    hist = {rid: g.sort_values("epoch") for rid, g in p.history.groupby("run_id")} if len(p.history) else {}
    for r in p.runs.itertuples(index=False):
        r = r._asdict()
        h = hist.get(r["run_id"])
        row = {"run_id": r["run_id"], "status": r["status"], "final": math.nan, "best": math.nan,
               "epochs_to_target": math.nan, "steps_to_target": math.nan, "time_to_target": math.nan,
               "loss_auc": math.nan, "curve": []}
        if metric.startswith("test_"):
            row["final"] = r.get(metric, math.nan)
        elif h is not None and metric in h:
            vals = h[metric].to_numpy(dtype=float)
            finite = vals[np.isfinite(vals)]
            row["final"] = vals[-1]
            row["best"] = (finite.max() if up else finite.min()) if len(finite) else math.nan
            hit = first_hit(h.to_dict("records"), metric, target) if target is not None else None
            if hit:
                row.update(epochs_to_target=hit["epoch"], steps_to_target=hit["step"], time_to_target=hit["elapsed_s"])
        if h is not None and len(h):
            row["curve"] = h["val_loss"].tolist()
            curve = h["val_loss"] if h["val_loss"].notna().all() else h["train_loss"]
            y, x = curve.to_numpy(dtype=float), h["epoch"].to_numpy(dtype=float)
            area = float(((y[1:] + y[:-1]) / 2 * np.diff(x)).sum())  # trapezoids
            row["loss_auc"] = area / (x[-1] - x[0]) if len(x) > 1 else float(y[0])
        rows.append(row)
    return pd.DataFrame(rows, columns=["run_id", "status", "final", "best", "epochs_to_target", "steps_to_target",
                                       "time_to_target", "loss_auc", "curve"])


def cell_label(keys: list[str], values: tuple) -> str:
    """'sgd, lr=0.1, momentum=0.9': a `.name` key shows just its value; unset keys are left out."""
    parts = []
    for k, v in zip(keys, values):
        if v == "-":
            continue
        parts.append(_part(k, v))
    return ", ".join(parts) or "all"


def _part(key: str, v) -> str:
    """'sgd' for optimizer.name, 'lr=0.1' for optimizer.lr; a deeper key keeps its path
    below the section: 'fallback=adamw', 'fallback.lr=0.001' (not a second 'lr=')."""
    if "." not in key:
        return _fmt(v)
    path = key.split(".", 1)[1]
    if path == "name":
        return _fmt(v)
    return f"{path.removesuffix('.name')}={_fmt(v)}"


def _fmt(v) -> str:
    """A swept value as labels show it: numbers short, param groups compact; runs.csv
    holds lists and mappings as JSON, read back here alike."""
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, str) and v.startswith("[{"):
        try:
            v = json.loads(v)
        except ValueError:
            return v
    if isinstance(v, list) and v and all(isinstance(g, dict) and "params" in g for g in v):  # param_groups
        return "[" + "; ".join(_group(g) for g in v) + "]"
    return str(v)


format_value = _fmt


def _group(g: dict) -> str:
    """A param group as 'output: adamw, lr=0.001'."""
    rest = [_fmt(g["name"])] if "name" in g else []
    rest += [f"{k}={_fmt(x)}" for k, x in g.items() if k not in ("params", "name")]
    return f"{_fmt(g['params'])}: {', '.join(rest)}"


def _groups(frame: pd.DataFrame, by: list[str]):
    """(key tuple, rows) per group of `by`, in first-seen order. groupby drops NaN keys, so
    a run without a key's value (a cell of another grid) gets "-" and is its own group."""
    if not by:
        yield (), frame
        return
    frame = frame.assign(**{k: frame[k].astype(object).where(frame[k].notna(), "-") for k in by})
    for key, g in frame.groupby(by, sort=False, dropna=False):
        yield (key if isinstance(key, tuple) else (key,)), g


def group_keys(problems: list[Problem], by: list[str] | None) -> list[str]:
    """`by` as given (each key must be a runs.csv column of every problem), else the swept
    keys all the problems share."""
    if by:
        for p in problems:
            missing = [k for k in by if k not in p.runs.columns]
            if missing:
                swept = ", ".join(p.swept) or "none"
                raise LossbenchError(f"--by: {p.dir} has no column {missing[0]!r}; its swept keys are: {swept}")
        return list(by)
    keys = list(problems[0].swept)
    return [k for k in keys if all(k in q.swept for q in problems)]


def rank_column(metric: str) -> str:
    """The per-run figure groups are ranked on: the best epoch, or the final value of a test metric."""
    return "final" if metric.startswith("test_") else "best"


def scores(g: pd.DataFrame, column: str, up: bool) -> np.ndarray:
    """Runs of `g` as stats.py wants them: higher is better, diverged = -inf (the worst),
    failed and pruned runs and ok runs without the figure left out (missing)."""
    return _scored(g, column, up).dropna().to_numpy()


def _unscore(v: float, up: bool) -> float:
    return v if up else -v


def robust(s: np.ndarray, up: bool, level: float, resamples: int, seed: int) -> dict:
    """Median, IQM and its bootstrap interval of scores `s`, in the metric's own units
    (a diverged run: -inf, or +inf for a lower-is-better metric)."""
    lo, hi = stats.bootstrap_ci(s, stats.iqm, level, resamples, seed)
    lo, hi = (lo, hi) if up else (-hi, -lo)
    return {"n": len(s), "median": _unscore(stats.median(s), up), "iqm": _unscore(float(stats.iqm(s)), up),
            "iqm_ci_low": lo, "iqm_ci_high": hi}


def aggregate(p: Problem, by: list[str], metric: str, target: float | None, level: float = 0.95,
              resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per group of `p` (see the module docstring), ranked, best first. The IQM's
    interval resamples each group's runs on its own (seeded by `seed` alone, so a group's
    interval does not depend on the other groups)."""
    up = higher_is_better(metric)
    each = per_run(p, metric, target).drop(columns="status")
    frame = p.runs.drop(columns=[c for c in each.columns if c != "run_id" and c in p.runs]) \
        .merge(each, on="run_id", how="left")  # ours: computed for this metric and target
    test_cols = [c for c in p.runs.columns if c.startswith("test_")]
    rows = []
    for key, g in _groups(frame, by):
        ok = g[g.status == "ok"]
        row = {"problem": p.name, "group": cell_label(by, key), **dict(zip(by, key)), "runs": len(g), "ok": len(ok),
               "diverged": int((g.status == "diverged").sum()), "failed": int((g.status == "failed").sum()),
               "pruned": int((g.status == "pruned").sum()),  # stopped early (prune): never ranked
               "pruned_at": g.loc[g.status == "pruned", "epochs"].max()}
        for what in ("final", "best"):
            m, s, lo, hi = mean_std_ci(ok[what])
            row.update({f"{what}_mean": m, f"{what}_std": s, f"{what}_ci_low": lo, f"{what}_ci_high": hi})
        row.update(robust(scores(g, rank_column(metric), up), up, level, resamples, seed))
        reached = ok.dropna(subset=["epochs_to_target"])
        for c in ("epochs_to_target", "steps_to_target", "time_to_target"):
            row[c] = reached[c].median() if len(reached) else math.nan
        row["reached"] = len(reached) / len(g) if target is not None else math.nan
        row["loss_auc_mean"], row["loss_auc_std"] = mean_std_ci(ok["loss_auc"])[:2]
        for c in test_cols:
            row[f"{c}_mean"], row[f"{c}_std"] = mean_std_ci(ok[c])[:2]
        row["wall_time_s"] = g["wall_time_s"].mean()
        cs = [c for c in ok["curve"] if c]
        n = min((len(c) for c in cs), default=0)
        row["val_loss_curve"] = [mean_std_ci([c[i] for c in cs])[0] for i in range(n)]
        rows.append(row)
    out = pd.DataFrame(rows)
    return _rank(out, up, target is not None) if len(out) else out


def _rank(out: pd.DataFrame, up: bool, with_target: bool) -> pd.DataFrame:
    """With a target: most seeds reaching it, then fewest epochs, then best metric.
    Without: best metric (mean over seeds of each run's best epoch). Groups without an
    `ok` run get no rank."""
    primary = out["best_mean"].where(out["best_mean"].notna(), out["final_mean"])
    score = pd.DataFrame({"m": -primary if up else primary, "bad": out["ok"] < out["runs"],
                          "p": -out["pruned_at"].fillna(0)})  # unranked: those pruned later first
    cols = ["bad", "m", "p"]  # a group where a seed diverged or failed ranks after every reliable one
    if with_target:
        score["r"], score["e"] = -out["reached"], out["epochs_to_target"].fillna(math.inf)
        cols = ["r", "e", "m", "p"]
    order = score.sort_values(cols, na_position="last", kind="stable").index
    out = out.loc[order].reset_index(drop=True)
    ranked = out["ok"].gt(0) & primary.loc[order].reset_index(drop=True).notna()
    out.insert(0, "rank", np.where(ranked, ranked.cumsum(), np.nan))
    return out


@dataclass
class Comparison:
    """What `compare_problems` returns: the table and how it was made."""

    table: pd.DataFrame  # one row per group and problem, ranked within each problem, best first
    metric: str
    keys: list[str]  # what the rows are grouped by
    higher_is_better: bool
    pooled: list[str]  # swept keys not every problem sweeps, pooled (only when the keys were not given)
    partial: list[str]  # "name: k of n runs recorded", per unfinished problem
    warnings: list[str] = field(default_factory=list)  # figures not comparable as they stand (loss units)
    notes: list[str] = field(default_factory=list)  # e.g. groups with too few seeds for the statistics
    versus: pd.DataFrame | None = None  # api.compare(vs=...): each group against its baseline (see `versus`)

    @property
    def with_target(self) -> bool:
        """Whether any problem has a target for the metric (the to-target columns mean something)."""
        return bool(self.table["target"].notna().any())


def compare_problems(problems: list[Problem], by: list[str] | None = None, metric: str | None = None,
                     target: float | None = None, resamples: int = 2000, seed: int = 0) -> Comparison:
    """Rows of all problems, each ranked within its problem. Each problem's target is its
    config's target when the metric matches, unless `target` is given. `resamples` and
    `seed`: the bootstrap of the IQM's 95% interval."""
    keys = group_keys(problems, by)
    m = metric or default_metric(problems[0])
    for p in problems:
        check_metric(p, m)
    frames = []
    for p in problems:
        t = target if target is not None else (p.target["value"] if p.target and p.target["metric"] == m else None)
        if m.startswith("test_"):
            t = None  # measured once, after training: there is no epoch at which it was reached
        f = aggregate(p, keys, m, t, 0.95, resamples, seed)
        f.insert(2, "target", math.nan if t is None else t)
        frames.append(f)
    out = pd.concat(frames, ignore_index=True)
    out["rank"] = out["rank"].astype("Int64")  # 1, 2, ... and empty for unranked, in CSV too
    pooled = sorted({k for p in problems for k in p.swept} - set(keys)) if not by else []
    partial = [f"{p.name}: {len(p.runs)} of {p.planned} runs recorded" for p in problems if p.planned > len(p.runs)]
    warnings = loss_unit_warnings(problems, keys, m)
    if warnings and is_loss(m):  # a loss value of one loss says nothing against another's
        out["rank"] = pd.array([pd.NA] * len(out), dtype="Int64")
    return Comparison(out, m, keys, higher_is_better(m), pooled, partial, warnings + shared_time_warnings(problems),
                      weak_notes(out))


def weak_notes(table: pd.DataFrame) -> list[str]:
    """Groups with fewer than stats.WEAK runs counted: their statistics are shown, but weak."""
    weak = table[table["n"] < stats.WEAK]
    if not len(weak):
        return []
    fewest = int(weak["n"].min())
    return [f"{len(weak)} of {len(table)} group(s) have fewer than {stats.WEAK} runs (as few as {fewest}): "
            "their median, IQM and intervals are weak evidence; more seeds make them trustworthy"]


def parse_vs(vs: list[str], keys: list[str]) -> dict[str, str]:
    """--vs KEY=VALUE items (a comma list each) -> {key: value}; each key one of `keys`."""
    out = {}
    for item in (x.strip() for v in vs for x in v.split(",") if x.strip()):
        key, eq, value = item.partition("=")
        if not eq or not value.strip():
            raise LossbenchError(f"--vs: {item!r} is not KEY=VALUE (e.g. --vs optimizer.name=sgd)")
        if key.strip() not in keys:
            raise LossbenchError(f"--vs: {key.strip()!r} is not a key the groups are made of; "
                                 f"they are grouped by: {', '.join(keys) or 'nothing (use --by)'}")
        out[key.strip()] = value.strip()
    return out


def _frame(p: Problem, metric: str, keys: list[str]) -> pd.DataFrame:
    """Runs with their per-run figures, group keys as _groups reads them."""
    each = per_run(p, metric, None).drop(columns="status")
    return p.runs.drop(columns=[c for c in each.columns if c != "run_id" and c in p.runs]).merge(each, on="run_id")


def versus(problems: list[Problem], comparison: Comparison, vs: dict[str, str], alpha: float = 0.05,
           resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Each group against its baseline: the group equal to it on the other keys, with the
    `vs` keys at the given values. Runs are paired by seed and by every pooled key; the
    figures are those of stats.paired (intervals at level 1 - alpha), p-values Holm-adjusted
    across the groups of a problem, and a verdict at `alpha`."""
    keys, metric, up = comparison.keys, comparison.metric, comparison.higher_is_better
    col, rows, found = rank_column(metric), [], {k: set() for k in vs}
    for p in problems:
        frame = _frame(p, metric, keys)
        pair_on = [c for c in [*p.swept, "seed"] if c not in keys and c in frame.columns]
        groups = {key: g for key, g in _groups(frame, keys)}
        base_of = {}
        for key in groups:
            named = {k: format_value(v) for k, v in zip(keys, key) if k in vs}
            for k, v in named.items():
                found[k].add(v)
            if all(named[k] == vs[k] for k in vs):
                base_of[tuple(v for k, v in zip(keys, key) if k not in vs)] = key
        part = []
        for key, g in groups.items():
            base = base_of.get(tuple(v for k, v in zip(keys, key) if k not in vs))
            if base is None or base == key:
                continue
            part.append(_pair(p, cell_label(keys, key), cell_label(keys, base), g, groups[base], pair_on, col, up,
                              alpha, resamples, seed))
        if part:
            t = pd.DataFrame(part)
            t.insert(t.columns.get_loc("p_value") + 1, "p_holm", stats.holm(t["p_value"]))
            rows.append(t)
    for k, v in vs.items():
        if v not in found[k]:
            raise LossbenchError(f"--vs: no group has {k}={v}; {k} takes: {', '.join(sorted(found[k]))}")
    if not rows:
        raise LossbenchError("--vs: every group is a baseline itself; group by more keys (--by) to compare")
    out = pd.concat(rows, ignore_index=True)
    sig = out["p_holm"] < alpha
    out["verdict"] = np.where(out["pairs"] == 0, "—", np.where(
        sig, np.where(out["direction"] > 0, "better", "worse"), "no evidence"))
    return out.drop(columns="direction")


def _pair(p, label, base_label, g, b, pair_on, col, up, alpha, resamples, seed) -> dict:
    """One row of `versus`: group runs `g` against baseline runs `b`, matched on `pair_on`."""
    sg = g.assign(score=_scored(g, col, up)).dropna(subset=["score"])
    sb = b.assign(score=_scored(b, col, up)).dropna(subset=["score"])
    both = sg.merge(sb, on=pair_on, suffixes=("", "_base"))
    r = stats.paired(both["score"], both["score_base"], 1 - alpha, resamples, seed)
    if not up:  # back to the metric's units: group - baseline
        r["diff_mean"], r["diff_ci_low"], r["diff_ci_high"] = -r["diff_mean"], -r["diff_ci_high"], -r["diff_ci_low"]
    note = "no common seeds" if not len(both) else \
        f"weak: {len(both)} pairs" if len(both) < stats.WEAK else ""
    return {"problem": p.name, "group": label, "baseline": base_label, **r, "note": note}


def _scored(g: pd.DataFrame, col: str, up: bool) -> pd.Series:
    """As `scores`, but aligned with g's rows (NaN where a run is missing)."""
    v = g[col].astype(float)
    s = np.where(g["status"] == "diverged", -np.inf, v if up else -v)
    # a pruned run stopped at a rung: its figure is not a final one, and it is missing like a failed one
    return pd.Series(np.where(g["status"].isin(["failed", "pruned"]), np.nan, s), index=g.index)


def improvement_matrix(p: Problem, comparison: Comparison) -> pd.DataFrame:
    """P(row group > column group) over all runs of the two (unpaired, ties half), groups in rank order."""
    keys, up = comparison.keys, comparison.higher_is_better
    groups = {cell_label(keys, key): scores(g, rank_column(comparison.metric), up)
              for key, g in _groups(_frame(p, comparison.metric, keys), keys)}
    order = [g for g in comparison.table[comparison.table["problem"] == p.name]["group"] if len(groups.get(g, []))]
    return pd.DataFrame([[float(stats.prob_improvement(groups[a], groups[b])) for b in order] for a in order],
                        index=order, columns=order)


def shared_time_warnings(problems: list[Problem]) -> list[str]:
    """Times of stacked runs are shares of their stack's time: say so where some were."""
    sizes = sorted({int(v) for p in problems if "stack_size" in p.runs.columns for v in p.runs["stack_size"].dropna()})
    if not sizes or sizes == [1]:
        return []
    return [f"some runs trained stacked ({', '.join(map(str, sizes))} runs per stack; stack_size in runs.csv): "
            "their times are shares of their stack's time, not times alone; the epochs and steps to target "
            "(and compare --profile --cost epochs or steps) do not depend on how runs were executed"]


def is_loss(metric: str) -> bool:
    """Measured in the units of the run's own loss (not comparable across losses)."""
    return metric.endswith("_loss")


def losses_of(problems: list[Problem]) -> list[str]:
    """The losses the compared runs trained with, as far as runs.csv says (a swept loss)."""
    names = []
    for p in problems:
        col = "loss.name" if "loss.name" in p.runs.columns else "loss" if "loss" in p.runs.columns else None
        if col:
            names += [str(v) for v in p.runs[col].dropna().unique() if str(v) not in names]
    return names


def loss_unit_warnings(problems: list[Problem], keys: list[str], metric: str) -> list[str]:
    """What is in loss units and mixes losses: ranking by a loss, loss AUC, val-loss curves."""
    names = losses_of(problems)
    if len(names) < 2:
        return []
    which = ", ".join(names)
    pooled = not any(k in ("loss", "loss.name") for k in keys)
    out = []
    if is_loss(metric):
        out.append(f"{metric} is in each loss's own units and these runs use different losses ({which}): "
                   "not comparable, so no group is ranked. Compare a metric such as val_accuracy or val_mae, "
                   "or one loss at a time")
    out.append(f"loss AUC and the val loss curves are in each loss's own units ({which})"
               + ("; here each group averages runs of different losses" if pooled else
                  "; compare them only between groups with the same loss"))
    return out


@dataclass
class Profile:
    """A performance profile (see `performance_profile`)."""

    table: pd.DataFrame  # one row per group: `problems`, then one `tau=...` column of fractions per factor
    ratios: pd.DataFrame  # group x problem: the group's cost over the best group's (inf: never solved)

    @property
    def solved(self) -> int:
        """Problems on which some group reached the target."""
        return int(np.isfinite(self.ratios.to_numpy()).any(axis=0).sum())


def performance_profile(comparison: Comparison, cost: str = "time_to_target",
                        taus=(1.0, 1.25, 1.5, 2.0, 4.0, 10.0)) -> Profile:
    """For each group label, the fraction of problems on which its cost (median to target;
    infinite when fewer than half its seeds reach the target) is within a factor tau of
    the best group's on that problem. A problem that no group solves counts against all."""
    t = comparison.table.copy()
    t["cost"] = t[cost].where(t["reached"] >= 0.5, math.inf).fillna(math.inf)
    wide = t.pivot_table(index="group", columns="problem", values="cost", aggfunc="first")
    wide = wide.reindex(columns=t["problem"].unique()).fillna(math.inf)  # a group absent from a problem never solves it
    best = wide.min(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = wide / best
    ratio.loc[:, ~np.isfinite(best.to_numpy())] = math.inf  # nobody solved it: no group is within any factor
    rows = {f"tau={tau:g}": (ratio <= tau).mean(axis=1) for tau in taus}
    out = pd.DataFrame(rows)
    out.insert(0, "problems", wide.shape[1])
    out = out.sort_values(list(rows), ascending=False, kind="stable")
    return Profile(out.reset_index(), ratio)


def lr_sensitivity(p: Problem, by: list[str], metric: str, tolerance: float = 0.05,
                   lr_key: str = "optimizer.lr") -> pd.DataFrame:
    """For each group of `by` (without the lr key): the mean best metric at each swept lr,
    the best lr, and the width in decades of the contiguous lr range around it whose mean
    is within `tolerance` (relative) of the best."""
    if lr_key != "optimizer.lr":
        hp_values(p, lr_key)
    elif lr_key not in p.runs.columns:
        raise LossbenchError(f"{p.dir}: {lr_key} is not swept, so there is no learning-rate sensitivity to show")
    keys = [k for k in by if k != lr_key]
    up = higher_is_better(metric)
    table = aggregate(p, [*keys, lr_key], metric, None)
    table = table[table[lr_key] != "-"]
    # a value whose every run was pruned has no final figure: left out, counted per group
    cut = table["pruned"].eq(table["runs"])
    cut_by = {key: len(g) for key, g in _groups(table[cut], keys)}
    table = table[~cut]
    value = table["best_mean"].where(table["best_mean"].notna(), table["final_mean"])
    table = table.assign(value=value, lr=table[lr_key].astype(float))
    per_group = table.groupby(keys, sort=False)["lr"].nunique() if keys else pd.Series([table["lr"].nunique()])
    if (len(table) == 0 or per_group.max() < 2) and cut_by:
        raise LossbenchError(f"{p.dir}: at most one value of {lr_key} per group finished (the other trials were "
                             "pruned), so there is no curve to show; compare --by it lists the finished ones")
    if len(table) == 0 or per_group.max() < 2:
        raise LossbenchError(f"{p.dir}: {lr_key} takes one value per group (it goes with another swept key), "
                             "so there is no learning-rate curve; sweep it on its own axis of the grid")
    rows = []
    for key, g in _groups(table, keys):
        g = g.sort_values("lr")
        lrs, vals = g["lr"].to_numpy(), g["value"].to_numpy(dtype=float)
        row = {"problem": p.name, "group": cell_label(keys, key), **dict(zip(keys, key)), "lrs": lrs.tolist(),
               "values": vals.tolist(), "ok": g["ok"].tolist(), "runs": g["runs"].tolist(),
               "stds": g["best_std"].tolist(), "best_lr": math.nan, "best": math.nan, "lr_low": math.nan,
               "lr_high": math.nan, "width_decades": math.nan, "best_at_edge": False,
               "pruned": cut_by.get(key, 0)}
        # an lr at which any seed diverged or failed is never "safe": not best, not in the range
        reliable = np.isfinite(vals) & (g["ok"].to_numpy() == g["runs"].to_numpy())
        if reliable.any():
            masked = np.where(reliable, vals if up else -vals, -np.inf)
            i = int(np.argmax(masked))
            best = vals[i]
            ok = reliable & (vals >= best - tolerance * abs(best) if up else vals <= best + tolerance * abs(best))
            lo = hi = i
            while lo > 0 and ok[lo - 1]:
                lo -= 1
            while hi < len(vals) - 1 and ok[hi + 1]:
                hi += 1
            row.update(best_lr=lrs[i], best=best, lr_low=lrs[lo], lr_high=lrs[hi],
                       width_decades=float(np.log10(lrs[hi] / lrs[lo])), best_at_edge=i in (0, len(lrs) - 1))
        rows.append(row)
    out = pd.DataFrame(rows)
    return out.sort_values("best", ascending=not up, na_position="last", kind="stable").reset_index(drop=True)


def lr_sensitivity_all(problems: list[Problem], comparison: Comparison, tolerance: float,
                       key: str = "optimizer.lr", by_given: bool = False) -> pd.DataFrame:
    """lr_sensitivity (of `key`) of each problem, measured as in their comparison and grouped
    by its keys (without the searched ranges, unless --by named them: see hp_groups)."""
    parts = [lr_sensitivity(p, hp_groups(p, comparison.keys, key, by_given), comparison.metric, tolerance, key)
             for p in problems]
    return pd.concat(parts, ignore_index=True)


def hp_groups(p: Problem, keys: list[str], key: str, by_given: bool = False) -> list[str]:
    """What a view of the metric against `key` groups by: `keys` without `key` and, unless
    they were asked for, without the keys a search drew (each trial has its own values: as
    groups, every group would be one trial), but for a chosen name (optimizer.name)."""
    return [k for k in keys if k != key and (by_given or k not in p.searched
                                             or p.searched[k] == "choice" and k.endswith(".name"))]


def hp_values(p: Problem, key: str) -> pd.Series:
    """`key`'s values as numbers; a key that is not swept, or not a number, is one clear error."""
    if key not in p.runs.columns:
        swept = ", ".join(p.swept) or "none"
        raise LossbenchError(f"--hp: {p.dir} does not sweep {key!r}; its swept keys are: {swept}")
    values = pd.to_numeric(p.runs[key], errors="coerce")
    bad = p.runs[key][values.isna() & p.runs[key].notna()]
    if len(bad):
        raise LossbenchError(f"--hp {key}: takes values that are not numbers (e.g. {bad.iloc[0]}); "
                             f"compare them with --by {key}")
    return values


def curves(p: Problem, by: list[str], column: str) -> dict[str, pd.DataFrame]:
    """group label -> per-epoch mean and std of `column` over the group's ok runs."""
    out = {}
    for key, g in _groups(p.runs[p.runs.status == "ok"], by):
        h = p.history[p.history.run_id.isin(g.run_id)]
        if len(h) and column in h:
            out[cell_label(by, key)] = h.groupby("epoch")[column].agg(["mean", "std", "count"]).reset_index()
    return out


def flat(table: pd.DataFrame) -> pd.DataFrame:
    """For CSV and Markdown: list-valued columns (curves, per-lr values) as JSON text."""
    out = table.copy()
    for c in out.columns:
        if out[c].map(lambda v: isinstance(v, list)).any():
            out[c] = out[c].map(json.dumps)
    return out


def to_markdown(table: pd.DataFrame) -> str:
    """A pipe table (GitHub/pandoc); cells are plain text, pipes escaped."""
    cols = list(table.columns)
    esc = [[str(c).replace("|", "\\|") for c in cols]]
    for row in table.itertuples(index=False):
        esc.append([_md(v).replace("|", "\\|") for v in row])
    lines = ["| " + " | ".join(r) + " |" for r in esc]
    lines.insert(1, "| " + " | ".join("---" for _ in cols) + " |")
    return "\n".join(lines) + "\n"


def _md(v) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    if isinstance(v, (list, dict)):
        return json.dumps(v)
    return str(v)
