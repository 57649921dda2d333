"""What every dataset loader shares: the registry, the raw-arrays record, the test split.

Kept apart from `__init__` so loader modules can import it without a circular import.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lossbench.errors import DataError
from lossbench.registry import Choice, Int, Optional, Real, Registry, Schema, fail

TASKS = ("classification", "regression")  # of data; a test function's problem is task "function"
NORMALIZE = ("none", "standard", "minmax")


def split_options(seed: int = 0, val_fraction: float = 0.1, normalize: str = "standard", limit: int | None = None):
    """The options every dataset takes; `data.load` applies them (see its docstring)."""


# Every loader is called with the dataset's seed; the split options above are load's.
DATASETS = Registry("dataset", context=("seed",), common=Schema.of(
    split_options, owner="dataset", seed=Int(ge=0), val_fraction=Real(ge=0, lt=1), normalize=Choice(*NORMALIZE),
    limit=Optional(Int(ge=1))))
TEST_FRACTION = Real(gt=0, lt=1)


@dataclass
class Raw:
    """A loader's output before splitting and normalization.

    x/y is the pool that `load` splits into train and validation; x_test/y_test is the
    held-out test split (native for MNIST, carved by `carve_test` for the others).
    The features are x / x_divisor as float32: a loader may hand over compact integers
    (MNIST's uint8 pixels, divisor 255) so that splitting copies bytes instead of floats
    and only the final arrays are ever allocated as float32.
    Image data gives its `image_shape` (channels, height, width); features are then the
    flattened images in channel-major order (C, H, W), as torchvision's tensors.
    """

    task: str
    n_outputs: int
    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_divisor: float = 1.0
    image_shape: tuple[int, int, int] | None = None  # (channels, height, width) of image data; None: tabular
    function: object = None  # task "function": the test function (data/functions.py); the arrays are None


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
        raise fail("dataset.test_fraction", f"leaves {n_test} of {n} examples for the test split, and each of "
                                            "train and test needs at least one", test_fraction)
    order = rng.permutation(n)
    test, pool = order[:n_test], order[n_test:]
    return x[pool], y[pool], x[test], y[test]


def check_labels(name: str, y: np.ndarray, n_classes: int) -> None:
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise DataError(f"{name}: labels must be in 0..{n_classes - 1}, "
                        f"found {int(y.min())}..{int(y.max())}")
