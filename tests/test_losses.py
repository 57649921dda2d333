"""Losses by hand: known values, stability on huge inputs, bad options. The gradient
check is in test_contracts.py, the torch comparison in test_parity.py."""

import math

import numpy as np
import pytest

from lossbench import losses
from lossbench.errors import ConfigError


def test_known_values_by_hand():
    p = np.array([[0.0, 3.0]], np.float32)
    t = np.array([[0.5, 0.0]], np.float32)
    assert losses.build("mse").value(p, t) == pytest.approx((0.25 + 9) / 2)
    assert losses.build("mae").value(p, t) == pytest.approx((0.5 + 3) / 2)
    # huber delta=1: 0.5*0.25 for |d|=.5 ; 1*(3-0.5) for |d|=3
    assert losses.build("huber").value(p, t) == pytest.approx((0.125 + 2.5) / 2)
    # smooth_l1 beta=2: 0.5*0.25/2 ; 3 - 1
    assert losses.build("smooth_l1", beta=2.0).value(p, t) == pytest.approx((0.0625 + 2.0) / 2)
    log_cosh = (math.log(math.cosh(0.5)) + math.log(math.cosh(3))) / 2
    assert losses.build("log_cosh").value(p, t) == pytest.approx(log_cosh)
    logits = np.array([[1.0, 2.0, 3.0]], np.float32)
    lse = math.log(math.exp(1) + math.exp(2) + math.exp(3))
    assert losses.build("cross_entropy").value(logits, np.array([0])) == pytest.approx(lse - 1, rel=1e-6)
    # margin 1, y=0: max(0, 1-1+2)=2, max(0, 1-1+3)=3 -> (2+3)/3 ; squared: (4+9)/3
    assert losses.build("hinge").value(logits, np.array([0])) == pytest.approx(5 / 3)
    assert losses.build("squared_hinge").value(logits, np.array([0])) == pytest.approx(13 / 3)
    x = np.array([[2.0]], np.float32)
    one = np.array([[1.0]], np.float32)
    assert losses.build("bce").value(x, one) == pytest.approx(math.log1p(math.exp(-2)), rel=1e-6)


def test_stable_on_huge_logits():
    logits = np.array([[1000.0, -1000.0, 0.0]], np.float32)
    ce = losses.build("cross_entropy")
    assert ce.value(logits, np.array([0])) == pytest.approx(0.0, abs=1e-6)
    assert ce.value(logits, np.array([1])) == pytest.approx(2000.0, rel=1e-6)
    assert np.isfinite(ce.grad(logits, np.array([1]))).all()
    bce = losses.build("bce")
    big = np.array([[100.0], [-100.0]], np.float32)
    assert bce.value(big, np.array([[0.0], [1.0]], np.float32)) == pytest.approx(100.0, rel=1e-6)
    far = losses.build("log_cosh").value(np.array([[500.0]], np.float32), np.zeros((1, 1), np.float32))
    assert far == pytest.approx(500 - math.log(2), rel=1e-6)


def test_bad_names_and_hyperparameters():
    with pytest.raises(ConfigError,
                       match=r"^loss\.name: must be one of \[.*\], got 'hubber' \(did you mean 'huber'\?\)$"):
        losses.build("hubber")
    with pytest.raises(ConfigError, match=r"^loss\.beta: unknown option \(loss 'huber' takes delta\), got 1\.0 "
                                          r"\(did you mean 'delta'\?\)$"):
        losses.build("huber", beta=1.0)
    with pytest.raises(ConfigError, match=r"^loss\.delta: must be a number > 0, got 0$"):
        losses.build("huber", delta=0)
    with pytest.raises(ConfigError, match=r"^loss\.label_smoothing: must be a number in \[0, 1\], got 1\.5$"):
        losses.build("cross_entropy", label_smoothing=1.5)
