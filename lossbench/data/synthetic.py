"""Small offline datasets generated from the seed: blobs, moons, spirals, regression.

They exist to make the differences between losses and optimizers visible in seconds:
2-D classification problems of increasing non-linearity, and a regression problem whose
training targets carry gross outliers so MSE, MAE and Huber learn visibly different fits.
"""

from __future__ import annotations

import numpy as np

from lossbench.data.base import DATASETS, Raw, carve_test, check_number, loader_rng


def _classes(n_samples: int, n_classes: int) -> np.ndarray:
    """Balanced labels 0..k-1 (sizes differ by at most one), in class order."""
    return np.arange(n_samples) % n_classes


def _finish(x, y, test_fraction, rng, n_classes: int) -> Raw:
    x, y, x_test, y_test = carve_test(np.asarray(x, np.float32), y, test_fraction, rng)
    return Raw("classification", n_classes, x, y, x_test, y_test)


def _check(name, n_samples, test_fraction, n_classes=2):
    check_number(name, "n_samples", n_samples, low=max(2, n_classes), integer=True)
    check_number(name, "test_fraction", test_fraction, low=0, high=1, low_open=True, high_open=True)


@DATASETS.register("blobs")
def blobs(seed, *, n_samples=1000, n_features=2, n_classes=3, cluster_std=1.0,
          test_fraction=0.2) -> Raw:
    """Isotropic Gaussian clusters, one per class, centres uniform in [-10, 10]^d."""
    check_number("blobs", "n_classes", n_classes, low=2, integer=True)
    check_number("blobs", "n_features", n_features, low=1, integer=True)
    check_number("blobs", "cluster_std", cluster_std, low=0)
    _check("blobs", n_samples, test_fraction, n_classes)
    rng = loader_rng(seed)
    centres = rng.uniform(-10, 10, size=(n_classes, n_features))
    y = _classes(n_samples, n_classes)
    x = centres[y] + cluster_std * rng.standard_normal((n_samples, n_features))
    return _finish(x, y, test_fraction, rng, n_classes)


@DATASETS.register("moons")
def moons(seed, *, n_samples=1000, noise=0.1, test_fraction=0.2) -> Raw:
    """Two interleaving half circles (as scikit-learn's make_moons), 2 classes."""
    check_number("moons", "noise", noise, low=0)
    _check("moons", n_samples, test_fraction)
    rng = loader_rng(seed)
    y = _classes(n_samples, 2)
    t = rng.uniform(0, np.pi, n_samples)
    upper = np.stack([np.cos(t), np.sin(t)], axis=1)
    lower = np.stack([1 - np.cos(t), 0.5 - np.sin(t)], axis=1)
    x = np.where(y[:, None] == 0, upper, lower) + noise * rng.standard_normal((n_samples, 2))
    return _finish(x, y, test_fraction, rng, 2)


@DATASETS.register("spirals")
def spirals(seed, *, n_samples=1000, n_classes=3, noise=0.2, test_fraction=0.2) -> Raw:
    """n_classes interleaved spiral arms in 2-D; noise jitters the angle (radians)."""
    check_number("spirals", "n_classes", n_classes, low=2, integer=True)
    check_number("spirals", "noise", noise, low=0)
    _check("spirals", n_samples, test_fraction, n_classes)
    rng = loader_rng(seed)
    y = _classes(n_samples, n_classes)
    r = rng.uniform(0.05, 1.0, n_samples)
    # Each arm turns 1.5 times from the centre; arms are offset by a full turn / n_classes.
    angle = 2 * np.pi * y / n_classes + 3 * np.pi * r + noise * rng.standard_normal(n_samples)
    x = r[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return _finish(x, y, test_fraction, rng, n_classes)


def regression_target(x: np.ndarray) -> np.ndarray:
    """The noiseless f(x): a sine per feature plus a shared quadratic bowl, O(1) in size."""
    return np.sin(2 * x).sum(axis=1) + 0.5 * np.square(x).mean(axis=1)


@DATASETS.register("regression")
def regression(seed, *, n_samples=1000, n_features=4, noise=0.1, outlier_fraction=0.1,
               outlier_scale=10.0, test_fraction=0.2) -> Raw:
    """y = f(x) + noise with x uniform in [-2, 2]^d, one target column.

    A fraction of the train pool (train + val) gets gross outliers: outlier_scale times
    U(0.5, 1.5), all positive. One-sided on purpose: the MSE fit is pulled up by about
    outlier_fraction * outlier_scale, while MAE and Huber barely move. Test targets stay
    clean (noise only), so test error measures how well each loss recovered f.
    """
    check_number("regression", "n_features", n_features, low=1, integer=True)
    check_number("regression", "noise", noise, low=0)
    check_number("regression", "outlier_fraction", outlier_fraction, low=0, high=1, high_open=True)
    check_number("regression", "outlier_scale", outlier_scale, low=0)
    _check("regression", n_samples, test_fraction)
    rng = loader_rng(seed)
    x = rng.uniform(-2, 2, size=(n_samples, n_features)).astype(np.float32)
    y = regression_target(x) + noise * rng.standard_normal(n_samples)
    x, y, x_test, y_test = carve_test(x, y, test_fraction, rng)
    n_out = int(round(outlier_fraction * len(y)))
    hit = rng.choice(len(y), size=n_out, replace=False)
    y = y.copy()
    y[hit] += outlier_scale * rng.uniform(0.5, 1.5, n_out)
    return Raw("regression", 1, x, y.astype(np.float32)[:, None],
               x_test, y_test.astype(np.float32)[:, None])
