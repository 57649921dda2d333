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


def test_binary_hinge_by_hand():
    # scikit-learn's hinge on {0,1} labels as y = 2t - 1: mean(max(0, 1 - y x))
    x = np.array([[2.0], [0.5], [-0.3], [-2.0]], np.float32)
    t = np.array([[1.0], [1.0], [1.0], [0.0]], np.float32)
    # y x = 2, 0.5, -0.3, 2 -> hinge 0, 0.5, 1.3, 0
    value, grad = losses.build("binary_hinge").value_and_grad(x, t)
    assert value == pytest.approx((0.5 + 1.3) / 4)
    np.testing.assert_array_equal(grad, [[0.0], [-0.25], [-0.25], [0.0]])
    # on the margin (y x = 1) the gradient is 0, as relu's at 0
    assert losses.build("binary_hinge").grad(np.array([[-1.0]], np.float32), np.zeros((1, 1), np.float32)) == 0


def test_quantile_by_hand():
    p = np.array([[0.0, 3.0, 1.0]], np.float32)
    t = np.array([[1.0, 1.0, 1.0]], np.float32)
    # d = t - p = 1, -2, 0: q = 0.9 -> 0.9 * 1, (0.9 - 1) * -2 = 0.2, 0
    value, grad = losses.build("quantile", quantile=0.9).value_and_grad(p, t)
    assert value == pytest.approx((0.9 + 0.2) / 3)
    np.testing.assert_allclose(grad, [[-0.9 / 3, 0.1 / 3, 0.0]], rtol=1e-6)
    # quantile 0.5 is half of mae
    rng = np.random.default_rng(0)
    p, t = rng.normal(size=(2, 5, 3)).astype(np.float32)
    assert losses.build("quantile").value(p, t) == pytest.approx(0.5 * losses.build("mae").value(p, t))


def test_new_losses_known_values_by_hand():
    x, one = np.array([[2.0]], np.float32), np.array([[1.0]], np.float32)
    bce = math.log1p(math.exp(-2))
    q = 1 - 1 / (1 + math.exp(-2))  # 1 - p_t for t = 1
    assert losses.build("focal").value(x, one) == pytest.approx(0.25 * q * q * bce, rel=1e-5)
    assert losses.build("focal", alpha=-1, gamma=0).value(x, one) == pytest.approx(bce, rel=1e-6)
    assert losses.build("soft_margin").value(x, one) == pytest.approx(bce, rel=1e-6)
    logits = np.array([[1.0, 2.0, 3.0]], np.float32)
    ce = losses.build("cross_entropy").value_and_grad(logits, np.array([0]))
    fl = losses.build("focal_softmax", gamma=0).value_and_grad(logits, np.array([0]))
    assert fl[0] == pytest.approx(ce[0], rel=1e-6)
    np.testing.assert_allclose(fl[1], ce[1], rtol=1e-6)
    # poisson: exp(x) - t x ; gaussian: 0.5 (log v + d^2 / v), v = softplus(s)
    assert losses.build("poisson_nll").value(np.array([[0.5]], np.float32), np.array([[3.0]], np.float32)) == \
        pytest.approx(math.exp(0.5) - 1.5, rel=1e-6)
    v = math.log1p(math.exp(0.3))
    out = np.array([[1.0, 0.3]], np.float32)  # mean 1, raw variance 0.3, for one target 2.5
    assert losses.build("gaussian_nll").value(out, np.array([[2.5]], np.float32)) == \
        pytest.approx(0.5 * (math.log(v) + 1.5**2 / v), rel=1e-6)
    assert losses.build("gaussian_nll").predict(out).tolist() == [[1.0]]
    assert losses.build("poisson_nll").predict(np.zeros((1, 1))).tolist() == [[1.0]]


def test_new_losses_stable_on_huge_logits():
    big = np.array([[100.0], [-100.0]], np.float32)
    wrong = np.array([[0.0], [1.0]], np.float32)
    for name in ("focal", "soft_margin"):
        v, g = losses.build(name).value_and_grad(big, wrong)
        assert math.isfinite(v) and np.isfinite(g).all(), name
    assert losses.build("soft_margin").value(big, wrong) == pytest.approx(100.0, rel=1e-6)
    # focal: q = 1 for confidently wrong logits, so alpha_t * bce: (0.75 * 100 + 0.25 * 100) / 2
    assert losses.build("focal").value(big, wrong) == pytest.approx(50.0, rel=1e-6)
    right = 1 - wrong
    v, g = losses.build("focal", gamma=0.5).value_and_grad(big, right)
    assert v == pytest.approx(0.0, abs=1e-30) and np.isfinite(g).all()
    ce = losses.build("focal_softmax")
    logits = np.array([[1000.0, -1000.0, 0.0]], np.float32)
    assert ce.value(logits, np.array([1])) == pytest.approx(2000.0, rel=1e-6)
    assert np.isfinite(ce.grad(logits, np.array([1]))).all() and np.isfinite(ce.grad(logits, np.array([0]))).all()


def test_new_hyperparameters_are_checked():
    with pytest.raises(ConfigError, match=r"^loss\.quantile: must be a number in \(0, 1\), got 1$"):
        losses.build("quantile", quantile=1)
    with pytest.raises(ConfigError, match=r"^loss\.gamma: must be a number >= 0, got -1$"):
        losses.build("focal", gamma=-1)
    with pytest.raises(ConfigError, match=r"^loss\.eps: must be a number > 0, got 0$"):
        losses.build("gaussian_nll", eps=0)
