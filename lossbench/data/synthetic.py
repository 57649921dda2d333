"""Small offline datasets generated from the seed: blobs, moons, spirals, regression,
counts, heteroscedastic.

They exist to make the differences between losses and optimizers visible in seconds:
2-D classification problems of increasing non-linearity, a regression problem whose
training targets carry gross outliers so MSE, MAE and Huber learn visibly different fits,
Poisson counts (poisson_nll's data) and noise that grows with |x| (gaussian_nll's and
quantile's: a predicted variance or quantile band has something to follow).
"""

from __future__ import annotations

import numpy as np

from lossbench.data.base import DATASETS, TEST_FRACTION, Raw, carve_test, loader_rng
from lossbench.registry import Int, Real, fail

SAMPLES, FEATURES, CLASSES, NONNEG = Int(ge=2), Int(ge=1), Int(ge=2), Real(ge=0)


def _classes(n_samples: int, n_classes: int) -> np.ndarray:
    """Balanced labels 0..k-1 (sizes differ by at most one), in class order."""
    return np.arange(n_samples) % n_classes


def _finish(x, y, test_fraction, rng, n_classes: int) -> Raw:
    x, y, x_test, y_test = carve_test(np.asarray(x, np.float32), y, test_fraction, rng)
    return Raw("classification", n_classes, x, y, x_test, y_test)


def _enough(n_samples: int, n_classes: int) -> None:
    if n_samples < n_classes:
        raise fail("dataset.n_samples", f"must be at least n_classes ({n_classes})", n_samples)


@DATASETS.register("blobs", n_samples=SAMPLES, n_features=FEATURES, n_classes=CLASSES, cluster_std=NONNEG,
                   test_fraction=TEST_FRACTION)
def blobs(seed, *, n_samples=1000, n_features=2, n_classes=3, cluster_std=1.0,
          test_fraction=0.2) -> Raw:
    """Isotropic Gaussian clusters, one per class, centres uniform in [-10, 10]^d."""
    _enough(n_samples, n_classes)
    rng = loader_rng(seed)
    centres = rng.uniform(-10, 10, size=(n_classes, n_features))
    y = _classes(n_samples, n_classes)
    x = centres[y] + cluster_std * rng.standard_normal((n_samples, n_features))
    return _finish(x, y, test_fraction, rng, n_classes)


@DATASETS.register("moons", n_samples=SAMPLES, noise=NONNEG, test_fraction=TEST_FRACTION)
def moons(seed, *, n_samples=1000, noise=0.1, test_fraction=0.2) -> Raw:
    """Two interleaving half circles (as scikit-learn's make_moons), 2 classes."""
    rng = loader_rng(seed)
    y = _classes(n_samples, 2)
    t = rng.uniform(0, np.pi, n_samples)
    upper = np.stack([np.cos(t), np.sin(t)], axis=1)
    lower = np.stack([1 - np.cos(t), 0.5 - np.sin(t)], axis=1)
    x = np.where(y[:, None] == 0, upper, lower) + noise * rng.standard_normal((n_samples, 2))
    return _finish(x, y, test_fraction, rng, 2)


@DATASETS.register("spirals", n_samples=SAMPLES, n_classes=CLASSES, noise=NONNEG, test_fraction=TEST_FRACTION)
def spirals(seed, *, n_samples=1000, n_classes=3, noise=0.2, test_fraction=0.2) -> Raw:
    """Interleaved spiral arms in 2-D, one per class; noise jitters the angle (radians)."""
    _enough(n_samples, n_classes)
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


@DATASETS.register("regression", n_samples=SAMPLES, n_features=FEATURES, noise=NONNEG,
                   outlier_fraction=Real(ge=0, lt=1), outlier_scale=NONNEG, test_fraction=TEST_FRACTION)
def regression(seed, *, n_samples=1000, n_features=4, noise=0.1, outlier_fraction=0.1,
               outlier_scale=10.0, test_fraction=0.2) -> Raw:
    """A nonlinear regression target whose training labels carry gross outliers.

    y = f(x) + noise with x uniform in [-2, 2]^d, one target column. A fraction of the
    train pool (train + val) gets gross outliers: outlier_scale times U(0.5, 1.5), all
    positive. One-sided on purpose: the MSE fit is pulled up by about
    outlier_fraction * outlier_scale, while MAE and Huber barely move. Test targets stay
    clean (noise only), so test error measures how well each loss recovered f.
    """
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


@DATASETS.register("counts", n_samples=SAMPLES, n_features=FEATURES, rate=Real(gt=0), test_fraction=TEST_FRACTION)
def counts(seed, *, n_samples=1000, n_features=2, rate=3.0, test_fraction=0.2) -> Raw:
    """Poisson-distributed counts whose log rate is linear in x (a Poisson regression).

    x uniform in [-1, 1]^d, log lambda = log(rate) + x . w with w ~ N(0, 3/d) drawn from the
    seed (so x . w has variance about 1), y ~ Poisson(lambda): non-negative integers as
    float32, one target column; `rate` is the mean count at x = 0.
    """
    rng = loader_rng(seed)
    w = rng.standard_normal(n_features) * np.sqrt(3.0 / n_features)
    x = rng.uniform(-1, 1, size=(n_samples, n_features)).astype(np.float32)
    y = rng.poisson(rate * np.exp(x @ w)).astype(np.float32)[:, None]
    x, y, x_test, y_test = carve_test(x, y, test_fraction, rng)
    return Raw("regression", 1, x, y, x_test, y_test)


def heteroscedastic_std(x: np.ndarray, noise: float, slope: float) -> np.ndarray:
    """The noise's standard deviation at x: noise + slope * mean|x| over the features."""
    return noise + slope * np.abs(x).mean(axis=1)


@DATASETS.register("heteroscedastic", n_samples=SAMPLES, n_features=FEATURES, noise=NONNEG, slope=NONNEG,
                   test_fraction=TEST_FRACTION)
def heteroscedastic(seed, *, n_samples=1000, n_features=1, noise=0.1, slope=0.5, test_fraction=0.2) -> Raw:
    """A regression target whose noise grows with |x|, for losses that predict a spread.

    y = f(x) + (noise + slope * mean|x|) * N(0, 1), with x uniform in [-2, 2]^d and f the
    `regression` dataset's noiseless target (no outliers), one target column: at the
    edges of the box the noise's std is noise + 2 slope.
    """
    rng = loader_rng(seed)
    x = rng.uniform(-2, 2, size=(n_samples, n_features)).astype(np.float32)
    y = regression_target(x) + heteroscedastic_std(x, noise, slope) * rng.standard_normal(n_samples)
    x, y, x_test, y_test = carve_test(x, y.astype(np.float32)[:, None], test_fraction, rng)
    return Raw("regression", 1, x, y, x_test, y_test)
