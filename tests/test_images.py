"""Image datasets are normalized per channel (torchvision's convention), on the real MNIST."""

from __future__ import annotations

import numpy as np
import pytest
import realdata

from lossbench import data

REAL = realdata.DATA
needs_mnist = realdata.needs_mnist


@pytest.fixture
def real_mnist(tmp_path, monkeypatch):
    monkeypatch.setenv("LOSSBENCH_DATA", str(REAL))
    monkeypatch.setenv("LOSSBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("LOSSBENCH_MIRRORS", "http://127.0.0.1:9/")  # never the network


@needs_mnist
def test_mnist_standard_is_one_mean_and_std_for_the_image(real_mnist):
    ds = data.load("mnist", normalize="standard")
    assert ds.image_shape == (1, 28, 28)
    # One statistic for every pixel: a blank pixel has the same value wherever it is, and the
    # training split has mean 0 and std 1 as a whole (torchvision: mean 0.1307, std 0.3081).
    blank = ds.x_train.min(axis=0)
    assert np.all(blank == blank[0]) and blank[0] == pytest.approx(-0.1307 / 0.3081, abs=2e-3)
    assert ds.x_train.mean() == pytest.approx(0, abs=1e-4) and ds.x_train.std() == pytest.approx(1, abs=1e-3)
    assert ds.x_train.max() < 3  # per pixel, rarely inked border pixels reached values in the hundreds
    raw = data.load("mnist", normalize="none")
    mean, std = raw.x_train.mean(dtype=np.float64), raw.x_train.std(dtype=np.float64)
    np.testing.assert_allclose(ds.x_test, (raw.x_test - mean) / std, atol=1e-5)


@needs_mnist
def test_mnist_minmax_is_per_channel(real_mnist):
    ds = data.load("mnist", normalize="minmax", limit=2000)
    assert ds.x_train.min() == 0 and ds.x_train.max() == 1
    top = ds.x_train.max(axis=0)
    assert ((top > 0) & (top < 0.5)).any()  # faint border pixels stay faint instead of being stretched to 1


def test_tabular_data_keeps_per_feature_statistics():
    ds = data.load("blobs", n_features=3, normalize="standard")
    assert ds.image_shape is None
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(ds.x_train.std(axis=0), 1, atol=1e-4)
