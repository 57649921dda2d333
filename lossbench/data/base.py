"""What every dataset loader shares: the registry, the raw-arrays record, option checks.

Kept apart from `__init__` so loader modules can import it without a circular import.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lossbench.errors import ConfigError, DataError
from lossbench.registry import Registry

DATASETS = Registry("dataset")

TASKS = ("classification", "regression")


@dataclass
class Raw:
    """A loader's output before splitting and normalization.

    x/y is the pool that `load` splits into train and validation; x_test/y_test is the
    held-out test split (native for MNIST, carved by `carve_test` for the others).
    The features are x / x_divisor as float32: a loader may hand over compact integers
    (MNIST's uint8 pixels, divisor 255) so that splitting copies bytes instead of floats
    and only the final arrays are ever allocated as float32.
    """

    task: str
    n_outputs: int
    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_divisor: float = 1.0


def loader_rng(seed: int) -> np.random.Generator:
    """The generator a loader draws its data and test split from.

    `load` splits train/val with default_rng(seed); this is a different stream of the
    same seed, so the split's draws are independent of the ones that made the data.
    """
    return np.random.default_rng([seed, 1])


def carve_test(x: np.ndarray, y: np.ndarray, test_fraction: float, rng: np.random.Generator):
    """Random (x, y, x_test, y_test) split; both sides keep at least one example."""
    n = len(x)
    n_test = int(round(n * test_fraction))
    if n_test < 1 or n_test > n - 1:
        raise ConfigError(
            f"test_fraction={test_fraction} leaves {n_test} of {n} examples for the test "
            "split; each of train and test needs at least one"
        )
    order = rng.permutation(n)
    test, pool = order[:n_test], order[n_test:]
    return x[pool], y[pool], x[test], y[test]


def check_number(dataset: str, key: str, value, *, low=None, high=None, integer=False,
                 low_open=False, high_open=False):
    """Raise ConfigError naming the dataset option unless value is a number in range."""
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    # bool is an int subclass, but `n_samples: true` in a config is a mistake.
    if isinstance(value, bool) or not isinstance(value, kinds):
        want = "an integer" if integer else "a number"
        raise ConfigError(f"dataset {dataset!r} option {key!r} must be {want}, got {value!r}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        lo = "" if low is None else ("(" if low_open else "[") + str(low)
        hi = "" if high is None else str(high) + (")" if high_open else "]")
        where = f"in {lo or '(-inf'}, {hi or 'inf)'}"
        raise ConfigError(f"dataset {dataset!r} option {key!r} must be {where}, got {value!r}")
    return value


def check_labels(name: str, y: np.ndarray, n_classes: int) -> None:
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise DataError(f"{name}: labels must be in 0..{n_classes - 1}, "
                        f"found {int(y.min())}..{int(y.max())}")
