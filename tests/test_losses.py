import math

import numpy as np
import pytest

from lossbench import losses
from lossbench.errors import ConfigError
from gradcheck import assert_close_grad, numeric_grad

N, C = 6, 4


def make_batch(name, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    pred = rng.normal(size=(N, C)).astype(dtype) * 2
    kind = losses.LOSSES.get(name).target
    if kind == "index":
        target = rng.integers(0, C, size=N)
    elif kind == "binary":
        target = rng.integers(0, 2, size=(N, C)).astype(dtype)
    else:
        target = rng.normal(size=(N, C)).astype(dtype) * 2
    return pred, target


# Non-default hyperparameters too, so the check covers the branches they switch on.
CASES = [(n, {}) for n in losses.LOSSES.names()] + [
    ("huber", {"delta": 0.5}),
    ("smooth_l1", {"beta": 0.3}),
    ("smooth_l1", {"beta": 0.0}),
    ("cross_entropy", {"label_smoothing": 0.2}),
    ("hinge", {"margin": 2.0}),
    ("squared_hinge", {"margin": 0.5}),
]


@pytest.mark.parametrize("name,kw", CASES, ids=[f"{n}{kw}" for n, kw in CASES])
def test_gradient_matches_finite_differences(name, kw):
    loss = losses.build(name, **kw)
    pred, target = make_batch(name)
    numeric = numeric_grad(lambda: loss.value(pred, target), pred)
    assert_close_grad(loss.grad(pred, target), numeric)


@pytest.mark.parametrize("name", losses.LOSSES.names())
def test_float32_in_float32_out_and_value_and_grad_agree(name):
    loss = losses.build(name)
    pred, target = make_batch(name, np.float32)
    v, g = loss.value_and_grad(pred, target)
    assert g.dtype == np.float32 and g.shape == pred.shape
    assert isinstance(v, float) and math.isfinite(v)
    assert v == loss.value(pred, target)
    np.testing.assert_array_equal(g, loss.grad(pred, target))


def test_known_values_by_hand():
    p = np.array([[0.0, 3.0]], np.float32)
    t = np.array([[0.5, 0.0]], np.float32)
    assert losses.build("mse").value(p, t) == pytest.approx((0.25 + 9) / 2)
    assert losses.build("mae").value(p, t) == pytest.approx((0.5 + 3) / 2)
    # huber delta=1: 0.5*0.25 for |d|=.5 ; 1*(3-0.5) for |d|=3
    assert losses.build("huber").value(p, t) == pytest.approx((0.125 + 2.5) / 2)
    # smooth_l1 beta=2: 0.5*0.25/2 ; 3 - 1
    assert losses.build("smooth_l1", beta=2.0).value(p, t) == pytest.approx((0.0625 + 2.0) / 2)
    assert losses.build("log_cosh").value(p, t) == pytest.approx((math.log(math.cosh(0.5)) + math.log(math.cosh(3))) / 2)
    logits = np.array([[1.0, 2.0, 3.0]], np.float32)
    lse = math.log(math.exp(1) + math.exp(2) + math.exp(3))
    assert losses.build("cross_entropy").value(logits, np.array([0])) == pytest.approx(lse - 1, rel=1e-6)
    # margin 1, y=0: max(0, 1-1+2)=2, max(0, 1-1+3)=3 -> (2+3)/3 ; squared: (4+9)/3
    assert losses.build("hinge").value(logits, np.array([0])) == pytest.approx(5 / 3)
    assert losses.build("squared_hinge").value(logits, np.array([0])) == pytest.approx(13 / 3)
    x = np.array([[2.0]], np.float32)
    assert losses.build("bce").value(x, np.array([[1.0]], np.float32)) == pytest.approx(math.log1p(math.exp(-2)), rel=1e-6)


def test_stable_on_huge_logits():
    logits = np.array([[1000.0, -1000.0, 0.0]], np.float32)
    ce = losses.build("cross_entropy")
    assert ce.value(logits, np.array([0])) == pytest.approx(0.0, abs=1e-6)
    assert ce.value(logits, np.array([1])) == pytest.approx(2000.0, rel=1e-6)
    assert np.isfinite(ce.grad(logits, np.array([1]))).all()
    bce = losses.build("bce")
    big = np.array([[100.0], [-100.0]], np.float32)
    assert bce.value(big, np.array([[0.0], [1.0]], np.float32)) == pytest.approx(100.0, rel=1e-6)
    assert losses.build("log_cosh").value(np.array([[500.0]], np.float32), np.zeros((1, 1), np.float32)) == pytest.approx(500 - math.log(2), rel=1e-6)


def test_bad_names_and_hyperparameters():
    with pytest.raises(ConfigError, match=r"did you mean 'huber'"):
        losses.build("hubber")
    with pytest.raises(ConfigError, match=r"does not take 'beta' \(did you mean 'delta'\?\)"):
        losses.build("huber", beta=1.0)
    with pytest.raises(ConfigError, match="delta must be > 0"):
        losses.build("huber", delta=0)
    with pytest.raises(ConfigError, match="label_smoothing"):
        losses.build("cross_entropy", label_smoothing=1.5)



TORCH_EQUIV = {
    "mse": lambda F, p, t: F.mse_loss(p, t),
    "mae": lambda F, p, t: F.l1_loss(p, t),
    "huber": lambda F, p, t: F.huber_loss(p, t, delta=1.0),
    "smooth_l1": lambda F, p, t: F.smooth_l1_loss(p, t, beta=1.0),
    "log_cosh": lambda F, p, t: (p - t).cosh().log().mean(),
    "cross_entropy": lambda F, p, t: F.cross_entropy(p, t),
    "bce": lambda F, p, t: F.binary_cross_entropy_with_logits(p, t),
    "hinge": lambda F, p, t: F.multi_margin_loss(p, t),
    "squared_hinge": lambda F, p, t: F.multi_margin_loss(p, t, p=2),
}


@pytest.mark.parametrize("name", sorted(TORCH_EQUIV))
def test_matches_pytorch(name):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    pred, target = make_batch(name, np.float32, seed=3)
    tp = torch.tensor(pred, requires_grad=True)
    tt = torch.tensor(target)
    ref = TORCH_EQUIV[name](F, tp, tt)
    ref.backward()
    loss = losses.build(name)
    assert loss.value(pred, target) == pytest.approx(ref.item(), rel=1e-5)
    np.testing.assert_allclose(loss.grad(pred, target), tp.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_label_smoothing_matches_pytorch():
    torch = pytest.importorskip("torch")
    pred, target = make_batch("cross_entropy", np.float32, seed=4)
    tp = torch.tensor(pred, requires_grad=True)
    ref = torch.nn.functional.cross_entropy(tp, torch.tensor(target), label_smoothing=0.1)
    ref.backward()
    loss = losses.build("cross_entropy", label_smoothing=0.1)
    assert loss.value(pred, target) == pytest.approx(ref.item(), rel=1e-5)
    np.testing.assert_allclose(loss.grad(pred, target), tp.grad.numpy(), rtol=1e-5, atol=1e-7)
