"""Convolutional networks reach published accuracies on the real data (long: ~4 minutes each).

They run when LOSSBENCH_LONG_TESTS=1 and the data is on the machine (CI's 10-minute budget
leaves no room for them):

    LOSSBENCH_LONG_TESTS=1 python -m pytest -q tests/test_cnn_accuracy.py

MNIST with DeepOBS's 2c2d and the issue's recipe (SGD momentum 0.9, lr 0.01, batch 128, 3
epochs). The issue asked for 0.99, but that is inside the seed noise of the reference itself:
torch with this recipe and data reached 0.9868 and 0.9904 (seeds 0, 1), lossbench 0.9894 and
0.9875; the test asserts 0.985, below torch's worse seed.

Fashion-MNIST with the same network, Adam and a cosine schedule over 4 epochs (0.9174 and
0.9184 on seeds 0 and 1): the Fashion-MNIST benchmark table gives 0.876-0.916 for two conv
layers with pooling.
"""

from __future__ import annotations

import os

import pytest
import realdata

from lossbench import data
from lossbench.train import train

pytestmark = [pytest.mark.slow, pytest.mark.skipif(os.environ.get("LOSSBENCH_LONG_TESTS") != "1",
                                                   reason="long; set LOSSBENCH_LONG_TESTS=1")]


@realdata.needs_mnist
def test_mnist_2c2d_momentum_sgd_in_3_epochs():
    d = data.load("mnist", seed=0, val_fraction=0.0, path=str(realdata.MNIST))
    r = train(d, model="2c2d", loss="cross_entropy", optimizer={"name": "sgd", "lr": 0.01, "momentum": 0.9},
              train={"epochs": 3, "batch_size": 128}, seed=0)
    assert r.status == "ok" and r.epochs == 3
    assert r.summary["test_accuracy"] >= 0.985


@realdata.needs_fashion
def test_fashion_mnist_2c2d_adam_cosine_reaches_91_percent():
    d = data.load("fashion_mnist", seed=0, val_fraction=0.0, path=str(realdata.FASHION))
    r = train(d, model="2c2d", loss="cross_entropy", optimizer={"name": "adam", "lr": 1e-3},
              train={"epochs": 4, "batch_size": 128, "schedule": {"name": "cosine"}}, seed=0)
    assert r.status == "ok" and r.epochs == 4
    assert r.summary["test_accuracy"] >= 0.91
