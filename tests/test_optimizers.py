"""Every optimizer: two steps against its recurrence written out by hand. The quadratic
every optimizer must reduce is in test_contracts.py, the torch.optim trajectories in
test_parity.py."""

import math

import numpy as np
import pytest

from lossbench import optimizers
from lossbench.errors import ConfigError

P0 = np.array([1.0, -2.0, 0.5])
G1 = np.array([0.5, -1.0, 0.0])
G2 = np.array([0.2, 0.4, -3.0])
sqrt = np.sqrt


def two_steps(name, **hp):
    p = P0.astype(np.float32).copy()
    opt = optimizers.build(name, [p], **hp)
    g1, g2 = G1.astype(np.float32), G2.astype(np.float32)
    opt.step([g1])
    p1 = p.copy()
    opt.step([g2])
    # the optimizer must leave the caller's gradients alone
    np.testing.assert_array_equal(g1, G1.astype(np.float32))
    return p1, p.copy()


def check(name, hp, e1, e2):
    p1, p2 = two_steps(name, **hp)
    np.testing.assert_allclose(p1, e1, rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(p2, e2, rtol=2e-6, atol=1e-7)


def test_sgd_plain_and_weight_decay():
    lr = 0.1
    p1 = P0 - lr * G1
    check("sgd", {"lr": lr}, p1, p1 - lr * G2)
    wd = 0.01
    p1 = P0 - lr * (G1 + wd * P0)
    check("sgd", {"lr": lr, "weight_decay": wd}, p1, p1 - lr * (G2 + wd * p1))
    check("gd", {"lr": lr}, P0 - lr * G1, P0 - lr * G1 - lr * G2)


def test_momentum_dampening_nesterov():
    lr, mu, damp = 0.1, 0.9, 0.3
    # first step: the buffer is the gradient itself (no dampening on step 1)
    b1 = G1
    b2 = mu * b1 + (1 - damp) * G2
    check("sgd", {"lr": lr, "momentum": mu, "dampening": damp}, P0 - lr * b1, P0 - lr * b1 - lr * b2)
    b2 = mu * G1 + G2
    p1 = P0 - lr * (G1 + mu * G1)
    check("sgd", {"lr": lr, "momentum": mu, "nesterov": True}, p1, p1 - lr * (G2 + mu * b2))
    # `momentum` is sgd with momentum 0.9 by default
    check("momentum", {"lr": lr}, P0 - lr * G1, P0 - lr * G1 - lr * (0.9 * G1 + G2))


def test_rmsprop_plain_centered_momentum():
    lr, a, eps = 0.01, 0.99, 1e-8
    v1 = (1 - a) * G1**2
    v2 = a * v1 + (1 - a) * G2**2
    p1 = P0 - lr * G1 / (sqrt(v1) + eps)
    check("rmsprop", {}, p1, p1 - lr * G2 / (sqrt(v2) + eps))
    m1 = (1 - a) * G1
    m2 = a * m1 + (1 - a) * G2
    p1 = P0 - lr * G1 / (sqrt(v1 - m1**2) + eps)
    check("rmsprop", {"centered": True}, p1, p1 - lr * G2 / (sqrt(v2 - m2**2) + eps))
    mu = 0.5
    b1 = G1 / (sqrt(v1) + eps)
    b2 = mu * b1 + G2 / (sqrt(v2) + eps)
    check("rmsprop", {"momentum": mu}, P0 - lr * b1, P0 - lr * b1 - lr * b2)


def test_adagrad_with_lr_decay_and_initial_accumulator():
    lr, decay, s0, eps = 0.1, 0.5, 0.2, 1e-10
    s1 = s0 + G1**2
    s2 = s1 + G2**2
    p1 = P0 - lr * G1 / (sqrt(s1) + eps)
    p2 = p1 - lr / (1 + decay) * G2 / (sqrt(s2) + eps)
    check("adagrad", {"lr": lr, "lr_decay": decay, "initial_accumulator_value": s0}, p1, p2)


def test_adadelta():
    rho, eps, lr = 0.9, 1e-6, 1.0
    v1 = (1 - rho) * G1**2
    d1 = sqrt(0 + eps) / sqrt(v1 + eps) * G1
    u1 = (1 - rho) * d1**2
    v2 = rho * v1 + (1 - rho) * G2**2
    d2 = sqrt(u1 + eps) / sqrt(v2 + eps) * G2
    check("adadelta", {}, P0 - lr * d1, P0 - lr * d1 - lr * d2)


def adam_ref(lr, b1, b2, eps, wd=0.0, amsgrad=False, decoupled=False):
    p, m, v, vmax = P0.copy(), 0.0, 0.0, 0.0
    out = []
    for t, g in ((1, G1), (2, G2)):
        if decoupled:
            p = p * (1 - lr * wd)
        else:
            g = g + wd * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vmax = np.maximum(vmax, v)
        vv = vmax if amsgrad else v
        p = p - lr / (1 - b1**t) * m / (sqrt(vv) / sqrt(1 - b2**t) + eps)
        out.append(p)
    return out


def test_adam_family():
    check("adam", {}, *adam_ref(1e-3, 0.9, 0.999, 1e-8))
    check("adam", {"lr": 0.1, "betas": [0.8, 0.9], "weight_decay": 0.1}, *adam_ref(0.1, 0.8, 0.9, 1e-8, wd=0.1))
    # amsgrad matters when v shrinks: G2[0]^2 < G1[0]^2 with a fast beta2
    check("adam", {"lr": 0.1, "betas": [0.9, 0.5], "amsgrad": True}, *adam_ref(0.1, 0.9, 0.5, 1e-8, amsgrad=True))
    check("adamw", {"lr": 0.1}, *adam_ref(0.1, 0.9, 0.999, 1e-8, wd=0.01, decoupled=True))


def test_adamax():
    lr, b1, b2, eps = 0.002, 0.9, 0.999, 1e-8
    m1 = (1 - b1) * G1
    u1 = np.maximum(0.0, np.abs(G1) + eps)
    p1 = P0 - lr / (1 - b1) * m1 / u1
    m2 = b1 * m1 + (1 - b1) * G2
    u2 = np.maximum(b2 * u1, np.abs(G2) + eps)
    check("adamax", {}, p1, p1 - lr / (1 - b1**2) * m2 / u2)


def test_nadam():
    lr, b1, b2, eps, psi = 0.002, 0.9, 0.999, 1e-8, 0.004
    mu = lambda t: b1 * (1 - 0.5 * 0.96 ** (t * psi))  # noqa: E731
    p, m, v, prod, out = P0.copy(), 0.0, 0.0, 1.0, []
    for t, g in ((1, G1), (2, G2)):
        prod *= mu(t)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        d = sqrt(v / (1 - b2**t)) + eps
        p = p - lr * (1 - mu(t)) / (1 - prod) * g / d - lr * mu(t + 1) / (1 - prod * mu(t + 1)) * m / d
        out.append(p)
    check("nadam", {}, *out)


def test_radam_before_and_after_rectification():
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    # rho_t <= 5 for the first steps with beta2 = 0.999: plain bias-corrected momentum
    m1 = (1 - b1) * G1
    p1 = P0 - lr * m1 / (1 - b1)
    m2 = b1 * m1 + (1 - b1) * G2
    check("radam", {"lr": lr}, p1, p1 - lr * m2 / (1 - b1**2))
    # with beta2 = 0.5, rho_inf = 3 < 5: never rectified either; use many steps instead
    p = np.ones(2, np.float32)
    opt = optimizers.build("radam", [p], lr=lr)
    g = np.array([0.3, -0.1], np.float32)
    m = v = 0.0
    ref = np.ones(2)
    rho_inf = 2 / (1 - b2) - 1
    for t in range(1, 9):
        opt.step([g])
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g.astype(np.float64) ** 2
        rho = rho_inf - 2 * t * b2**t / (1 - b2**t)
        mhat = m / (1 - b1**t)
        if rho > 5:
            r = math.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
            ref = ref - lr * mhat * r * sqrt(1 - b2**t) / (sqrt(v) + eps)
        else:
            ref = ref - lr * mhat
    assert rho > 5  # the rectified branch was exercised
    np.testing.assert_allclose(p, ref, rtol=1e-5)


def test_clip_grad_norm():
    g1, g2 = np.array([3.0, 0.0], np.float32), np.array([4.0], np.float32)
    total = optimizers.clip_grad_norm([g1, g2], 1.0)
    assert total == pytest.approx(5.0)
    np.testing.assert_allclose(np.concatenate([g1, g2]), [0.6, 0.0, 0.8], rtol=1e-5)
    g = np.array([0.3, 0.4], np.float32)
    assert optimizers.clip_grad_norm([g], 1.0) == pytest.approx(0.5)
    np.testing.assert_array_equal(g, np.array([0.3, 0.4], np.float32))  # under the cap: untouched


@pytest.mark.parametrize(
    "name,hp,pattern",
    [
        ("adam", {"lr": -0.1}, r"^optimizer\.lr: must be a number > 0, got -0\.1$"),
        ("adam", {"lr": 0}, r"^optimizer\.lr: must be a number > 0, got 0$"),
        ("adam", {"lr": float("nan")}, r"^optimizer\.lr: must be a number > 0, got NaN$"),
        ("adam", {"lr": "0.1"}, r"^optimizer\.lr: must be a number > 0, got '0\.1'$"),
        ("adam", {"betas": [1.5, 0.9]}, r"^optimizer\.betas\[0\]: must be a number in \[0, 1\), got 1\.5$"),
        ("adam", {"betas": [0.9, 1.0]}, r"^optimizer\.betas\[1\]: must be a number in \[0, 1\), got 1\.0$"),
        ("adam", {"amsgrad": 1}, r"^optimizer\.amsgrad: must be true or false, got 1$"),
        ("sgd", {"momentum": -1}, r"^optimizer\.momentum: must be a number >= 0, got -1$"),
        ("sgd", {"nesterov": True}, r"^optimizer\.nesterov: needs momentum > 0 and dampening = 0"),
        ("momentum", {"nesterov": True, "dampening": 0.1},
         r"^optimizer\.nesterov: needs momentum > 0 and dampening = 0"),
        ("rmsprop", {"alpha": 2}, r"^optimizer\.alpha: must be a number in \[0, 1\], got 2$"),
        ("adam", {"momentum": 0.9}, r"^optimizer\.momentum: unknown option \(optimizer 'adam' takes lr, betas, eps"),
        ("adam", {"params": 1}, r"^optimizer\.params: unknown option"),  # context, never a hyperparameter
        ("adamm", {}, r"^optimizer\.name: must be one of .*, got 'adamm' \(did you mean 'adam'\?\)$"),
        ("sgd", {"weight_decay": -1}, r"^optimizer\.weight_decay: must be a number >= 0, got -1$"),
    ],
)
def test_bad_hyperparameters_name_the_key(name, hp, pattern):
    with pytest.raises(ConfigError, match=pattern):
        optimizers.build(name, [np.zeros(2, np.float32)], **hp)


def test_gradient_of_the_wrong_shape_is_refused():
    opt = optimizers.build("adam", [np.zeros((3, 2), np.float32)])
    with pytest.raises(ValueError, match=r"gradient 0 has shape \(2,\), its parameter \(3, 2\)"):
        opt.step([np.zeros(2, np.float32)])


def test_copies_count_the_parameter_sized_arrays_an_optimizer_holds():
    w = [np.zeros(3, np.float32)]
    cases = [("sgd", {}), ("momentum", {}), ("adam", {}), ("adam", {"amsgrad": True}), ("rmsprop", {"centered": True})]
    copies = [optimizers.build(name, w, **kw).copies() for name, kw in cases]
    assert copies == [3, 4, 5, 6, 5]  # scratch (3) + state: buf; M, V; + Vmax; v, m
    opt = optimizers.build("momentum", w)
    opt.step([np.ones(3, np.float32)])  # the buffer it promised is the one it made
    assert len(opt.state[0]) + len(vars(opt.scratch[0])) == opt.copies()


def test_params_must_be_a_list_of_arrays():
    with pytest.raises(TypeError, match="not one array"):
        optimizers.build("adam", np.zeros((3, 2), np.float32))


def test_lion_is_its_recurrence():
    """lucidrains/lion-pytorch, written out in float64 and compared within float32 rounding:
    p *= 1 - lr wd; p -= lr sign(b1 m + (1-b1) g); m = b2 m + (1-b2) g."""
    rng = np.random.default_rng(0)
    for hp in ({}, {"lr": 0.01, "betas": (0.8, 0.95), "weight_decay": 0.1}):
        lr, (b1, b2), wd = hp.get("lr", 1e-4), hp.get("betas", (0.9, 0.99)), hp.get("weight_decay", 0.0)
        p = rng.normal(size=40).astype(np.float32)
        ref, m = p.astype(np.float64), np.zeros(40)
        opt = optimizers.build("lion", [p], **hp)
        for _ in range(25):
            g = rng.normal(size=40).astype(np.float32) + np.float32(0.1) * p
            opt.step([g])
            ref *= 1 - lr * wd
            ref -= lr * np.sign(b1 * m + (1 - b1) * g)
            m = b2 * m + (1 - b2) * g
            np.testing.assert_allclose(p, ref, rtol=1e-5, atol=1e-6)
        assert not np.array_equal(p, rng.normal(size=40))


def test_lamb_is_its_recurrence():
    """cybertronai/pytorch-lamb, written out in float64 per tensor of the layout and
    compared within float32 rounding (a zero norm gives ratio 1, see the docstring)."""
    rng = np.random.default_rng(1)
    layout = [("0.Linear.weight", (4, 5)), ("0.Linear.bias", (5,)), ("2.Linear.weight", (5, 2))]
    n = 20 + 5 + 10
    for hp in ({}, {"lr": 0.01, "betas": (0.8, 0.95), "eps": 1e-4, "weight_decay": 0.1}):
        lr, (b1, b2) = hp.get("lr", 1e-3), hp.get("betas", (0.9, 0.999))
        eps, wd = hp.get("eps", 1e-6), hp.get("weight_decay", 0.0)
        p = rng.normal(size=n).astype(np.float32)
        p[20:25] = 0.0  # a bias at zero: ratio 1, it moves
        ref, m, v = p.astype(np.float64), np.zeros(n), np.zeros(n)
        opt = optimizers.build("lamb", [p], **hp)
        opt.layout = layout
        for _ in range(20):
            g = rng.normal(size=n).astype(np.float32) + np.float32(0.1) * p
            opt.step([g])
            m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
            u = m / (np.sqrt(v) + eps) + wd * ref
            for a, b in ((0, 20), (20, 25), (25, 35)):
                wn, un = min(np.linalg.norm(ref[a:b]), 10.0), np.linalg.norm(u[a:b])
                ref[a:b] -= lr * (wn / un if wn and un else 1.0) * u[a:b]
            np.testing.assert_allclose(p, ref, rtol=2e-5, atol=1e-6)
        assert np.all(p[20:25] != 0.0)


def test_lbfgs_ends_its_step_at_a_non_finite_loss():
    # f(p) = sum(p^2) until the third evaluation, which is NaN: torch would go on with NaN
    # to max_iter; lbfgs stops there, marks itself diverged and returns NaN
    p = np.array([1.0, -2.0], np.float32)
    opt = optimizers.build("lbfgs", [p], max_iter=20)
    calls = []

    def closure():
        calls.append(p.copy())
        return (float(np.sum(p * p)) if len(calls) < 3 else math.nan), 2 * p

    assert math.isnan(opt.step_closure(closure)) and opt.diverged
    assert len(calls) == 3
    np.testing.assert_array_equal(p, calls[-1])  # where the NaN was evaluated
    fine = optimizers.build("lbfgs", [np.array([1.0, -2.0], np.float32)])
    assert not fine.diverged
