"""Metric rules, in one place: which metrics a task reports, which way is better, and
when a metric first reaches a target. Training, the results tables and the comparisons
all ask here, so "best" and "reached" mean the same thing everywhere."""

from __future__ import annotations

import math

from lossbench.errors import ConfigError

# Whether a bigger value of a metric is better; decides "best", early stopping and ranks.
HIGHER_IS_BETTER = {"loss": False, "accuracy": True, "mae": False, "r2": True, "distance": False}
# "function": a test function's value at the point, and the point's distance to the nearest minimum
TASK_METRICS = {"classification": ("loss", "accuracy"), "regression": ("loss", "mae", "r2"),
                "function": ("loss", "distance")}
# The values each metric can take (every loss here is >= 0): a target outside is never reached.
RANGES = {"loss": (0.0, math.inf), "accuracy": (0.0, 1.0), "mae": (0.0, math.inf), "r2": (-math.inf, 1.0),
          "distance": (0.0, math.inf)}


def higher_is_better(metric: str) -> bool:
    """For a bare name (`accuracy`) or a split-prefixed one (`val_accuracy`, `test_r2`)."""
    name = metric.split("_", 1)[1] if "_" in metric else metric
    if name not in HIGHER_IS_BETTER:
        raise ConfigError(f"--metric: unknown metric {metric!r}; use train_loss, val_loss, val_<m> or test_<m> "
                          f"with m one of {sorted(HIGHER_IS_BETTER)}")
    return HIGHER_IS_BETTER[name]


def value_range(metric: str) -> tuple[float, float]:
    """(lowest, highest) value `metric` (bare or split-prefixed) can take."""
    higher_is_better(metric)  # a known metric
    return RANGES[metric.split("_", 1)[1] if "_" in metric else metric]


def reaches(value, target: float, up: bool) -> bool:
    return value is not None and (value >= target if up else value <= target)


def first_hit(history: list[dict], metric: str, value: float) -> dict | None:
    """The first history row whose `metric` reaches `value` (>= or <= as the metric goes)."""
    up = higher_is_better(metric)
    for row in history:
        if reaches(row.get(metric), value, up):
            return row
    return None
