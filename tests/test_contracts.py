"""Contracts every registered item keeps, looping over the registries: a new item is
covered by registering it, with no new test code.

- every loss and layer: analytic gradient = central finite differences (float64)
- every model: builds with its defaults, forward/backward shapes agree, and its
  gradient matches finite differences on a tiny input
- every optimizer: reduces an ill-conditioned quadratic; lr = 0 is a no-op step
- every schedule: finite, positive learning rates for each of its epochs
- every dataset that needs no files: loads with its defaults, deterministic per seed
- every item: its docstring starts with a one-line, one-sentence summary (what
  `lossbench list` shows)
"""

import inspect
import math
import re

import numpy as np
import pytest

from lossbench import data
from lossbench.data import synthetic
from lossbench.engine import losses, nn, optimizers, schedules
from lossbench.engine.functions import FUNCTIONS
from lossbench.errors import ConfigError
from lossbench.registry import REQUIRED

from gradcheck import assert_close_grad, loss_batch, numeric_grad, numeric_partial

REGISTRIES = {
    "dataset": data.DATASETS,
    "model": nn.MODELS,
    "layer": nn.LAYERS,
    "loss": losses.LOSSES,
    "optimizer": optimizers.OPTIMIZERS,
    "schedule": schedules.SCHEDULES,
}


# ---------------------------------------------------------------- losses

# Every loss with its defaults, and non-default hyperparameters too, so the check covers
# the branches they switch on. A hyperparameter named here that a loss no longer takes
# fails in build().
LOSS_CASES = [(n, {}) for n in losses.LOSSES.names()] + [
    ("huber", {"delta": 0.5}),
    ("smooth_l1", {"beta": 0.3}),
    ("smooth_l1", {"beta": 0.0}),
    ("cross_entropy", {"label_smoothing": 0.2}),
    ("hinge", {"margin": 2.0}),
    ("squared_hinge", {"margin": 0.5}),
    ("focal", {"alpha": -1.0, "gamma": 0.5}),
    ("focal", {"alpha": 0.9, "gamma": 0.0}),
    ("focal_softmax", {"gamma": 0.0}),
    ("focal_softmax", {"gamma": 0.5}),
    ("poisson_nll", {"full": True}),
    ("gaussian_nll", {"full": True}),
    ("quantile", {"quantile": 0.1}),
    ("quantile", {"quantile": 0.9}),
]


@pytest.mark.parametrize("name,kw", LOSS_CASES, ids=[f"{n}{kw}" for n, kw in LOSS_CASES])
def test_loss_gradient_matches_finite_differences(name, kw):
    loss = losses.build(name, **kw)
    pred, target = loss_batch(loss)
    numeric = numeric_grad(lambda: loss.value(pred, target), pred)
    assert_close_grad(loss.grad(pred, target), numeric)


@pytest.mark.parametrize("name", losses.LOSSES.names())
def test_loss_float32_in_float32_out_and_value_and_grad_agree(name):
    loss = losses.build(name)
    pred, target = loss_batch(loss, dtype=np.float32)
    v, g = loss.value_and_grad(pred, target)
    assert g.dtype == np.float32 and g.shape == pred.shape
    assert isinstance(v, float) and math.isfinite(v)
    assert v == loss.value(pred, target)
    np.testing.assert_array_equal(g, loss.grad(pred, target))


# ---------------------------------------------------------------- layers

# Layers that need structural arguments or image-shaped input: name -> (arguments, input shape).
# Sizes are odd and unequal so a transposed or misordered axis cannot pass by symmetry.
LAYER_CASES = {
    "conv2d": ({"in_channels": 2, "out_channels": 3, "kernel_size": 3, "stride": 2, "padding": 1}, (2, 2, 7, 6)),
    "max_pool2d": ({"kernel_size": 2}, (2, 3, 5, 4)),
    "avg_pool2d": ({"kernel_size": 3, "stride": 2}, (2, 3, 7, 5)),
    "flatten": ({}, (2, 3, 4, 5)),
    "batch_norm": ({"num_features": 3}, (4, 3, 2, 3)),
}


def make_layer(name):
    """A layer with its defaults (or the arguments LAYER_CASES gives); sizes and a
    generator for the arguments that are not hyperparameters (n_in, n_out, rng)."""
    cls = nn.LAYERS.get(name)
    given = LAYER_CASES.get(name, ({}, None))[0]
    required = [k for k, p in nn.LAYERS.schema(name).params.items() if p.default is REQUIRED and k not in given]
    assert not required, f"layer {name!r}: the contract test cannot build it without {required} (add LAYER_CASES)"
    takes = inspect.signature(cls).parameters
    extra = {k: v for k, v in {"n_in": 5, "n_out": 3, "rng": np.random.default_rng(0)}.items() if k in takes}
    return cls(**extra, **nn.LAYERS.check(name, given))


@pytest.mark.parametrize("name", nn.LAYERS.names())
def test_layer_gradient_matches_finite_differences(name):
    rng = np.random.default_rng(1)
    layer = make_layer(name)
    # float64 parameters so finite differences are precise
    params = [rng.normal(size=s) for s in layer.shapes]
    grads = [np.zeros(s) for s in layer.shapes]
    layer.bind(params, grads)
    shape = LAYER_CASES.get(name, ({}, None))[1] or (4, layer.shapes[0][0] if layer.shapes else 5)
    x = rng.normal(size=shape)

    def forward():
        if hasattr(layer, "rng"):  # a random layer (dropout) draws the same mask every call
            layer.rng = np.random.default_rng(7)
        return layer.forward(x, True)

    y, _ = forward()
    w = rng.normal(size=y.shape)  # loss = sum(w * y)

    def f():
        return float(np.sum(w * forward()[0]))

    _, backprop = forward()
    dx = backprop(w.copy())
    assert dx.shape == x.shape
    assert_close_grad(dx, numeric_grad(f, x))
    for p, g in zip(params, grads):
        assert_close_grad(g, numeric_grad(f, p))


# ---------------------------------------------------------------- models

@pytest.mark.parametrize("name", nn.MODELS.names())
def test_model_builds_shapes_agree_and_gradient_matches_finite_differences(name):
    n_in, n_out, batch, image = 3, 2, 4, None
    try:
        net = nn.build(name, n_in, n_out, 0)
    except ConfigError:  # an image model: small two-channel images
        image = (2, 16, 16)
        n_in = int(np.prod(image))
        net = nn.build(name, n_in, n_out, 0, image)
    assert net.params.dtype == np.float32 and net.params.ndim == 1 and net.n_params == net.params.size > 0
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, n_in)).astype(np.float32)
    out = net.forward(x, True)
    assert out.shape == (batch, n_out) and out.dtype == np.float32
    w = rng.normal(size=out.shape)  # loss = sum(w * out)
    g = net.backward(w.astype(np.float32))
    assert g.shape == net.params.shape and g.dtype == np.float32
    assert net.predict(x).shape == (batch, n_out)

    # float64 copy of the flat buffer, nudged so no ReLU sits exactly on its kink
    net.bind(net.params.astype(np.float64) + rng.normal(scale=0.1, size=net.n_params))
    x = x.astype(np.float64)
    net.forward(x, True)
    net.backward(w.copy())
    # every coordinate of a small model; an image model's 300 at random (it has 10^5+)
    picked = np.arange(net.n_params) if net.n_params <= 2000 else rng.choice(net.n_params, 300, replace=False)
    numeric = [numeric_partial(lambda: float(np.sum(w * net.forward(x, True))), net.params, i) for i in picked]
    assert_close_grad(net.grads[picked], np.array(numeric), atol=1e-6)


# ---------------------------------------------------------------- optimizers

def shaped(name, values):
    """Parameters as the optimizer takes them: a vector, or a 2 x n matrix for optimizers
    of matrices only (muon)."""
    p = np.array(values, np.float32)
    return p.reshape(2, -1) if getattr(optimizers.OPTIMIZERS.get(name), "matrices", False) else p


@pytest.mark.parametrize("name", optimizers.OPTIMIZERS.names())
def test_every_optimizer_reduces_a_quadratic(name):
    # f(p) = 0.5 * sum(a * p^2): an ill-conditioned bowl with minimum at 0
    a = shaped(name, [1.0, 10.0, 0.1, 3.0])
    p = shaped(name, [1.0, -1.0, 2.0, 0.5])
    f0 = float(0.5 * np.sum(a * p * p))
    lr = {"adadelta": 1.0, "adagrad": 0.1, "sgd": 0.05, "gd": 0.05, "momentum": 0.02}.get(name, 0.01)
    if optimizers.needs_closure(name):  # lbfgs: its own defaults, a closure, a few steps of many evaluations
        opt = optimizers.build(name, [p])
        for _ in range(5):
            opt.step_closure(lambda: (float(0.5 * np.sum(a * p * p)), a * p))
    else:
        opt = optimizers.build(name, [p], lr=lr)
        for _ in range(200):
            opt.step([a * p])
    f = float(0.5 * np.sum(a * p * p))
    assert f < 0.5 * f0, f"{name}: {f0} -> {f}"
    assert np.isfinite(p).all()


# optimizers whose lr only seeds per-coordinate state when they are made (torch's too): a
# later lr of 0 does not stop their next step (rprop: steps start at lr; asgd: eta is lr
# until the first step's end)
LR_SEEDS_STATE = {"rprop", "asgd"}


@pytest.mark.parametrize("name", sorted(set(optimizers.OPTIMIZERS.names()) - LR_SEEDS_STATE))
def test_lr_zero_is_a_no_op_step(name):
    # a cosine schedule ends at lr = 0; torch then leaves the parameters alone
    p = shaped(name, [1.0, -2.0, 3.0, 0.5])
    wd = {"weight_decay": 0.0} if "weight_decay" in optimizers.OPTIMIZERS.schema(name).params else {}
    opt = optimizers.build(name, [p], **wd)
    opt.lr = 0.0
    g = np.full_like(p, 0.5)
    if optimizers.needs_closure(name):  # lbfgs: the loss whose gradient g is, through its closure
        opt.step_closure(lambda: (float(np.sum(g * p)), g))
    else:
        opt.step([g])
    np.testing.assert_array_equal(p.ravel(), [1.0, -2.0, 3.0, 0.5])


# ---------------------------------------------------------------- schedules

@pytest.mark.parametrize("name", schedules.SCHEDULES.names())
def test_every_schedule_gives_finite_positive_lrs(name):
    epochs = 40
    s = schedules.build(name, 0.1, epochs)
    # a validation loss that stops improving, so plateau schedules act too
    metrics = [None] + [1.0 / (1 + e) if e < 5 else 0.2 for e in range(1, epochs)]
    lrs = [s(e, m) for e, m in enumerate(metrics)]
    bad = [(e, lr) for e, lr in enumerate(lrs) if not (isinstance(lr, float) and math.isfinite(lr) and lr > 0)]
    assert not bad, f"schedule {name!r}: (epoch, lr) not finite and positive: {bad[:5]}"


# ---------------------------------------------------------------- datasets

def needs_files(name: str) -> bool:
    """A loader that reads files takes a `path` option (csv, mnist, fashion_mnist)."""
    return "path" in {k: p.default for k, p in data.DATASETS.schema(name).params.items()}


# test functions are datasets without data (tests/test_functions.py covers them)
FUNCTION_DATASETS = set(FUNCTIONS)
FILE_FREE = [n for n in data.DATASETS.names() if not needs_files(n) and n not in FUNCTION_DATASETS]
PARTS = ["x_train", "y_train", "x_val", "y_val", "x_test", "y_test"]


def test_every_generated_dataset_counts_as_file_free():
    generated = [n for n in data.DATASETS.names() if data.DATASETS.get(n).__module__ == synthetic.__name__]
    assert generated and set(generated) <= set(FILE_FREE)


@pytest.mark.parametrize("name", FILE_FREE)
def test_file_free_dataset_loads_with_defaults_and_is_deterministic_per_seed(name):
    a, b, c = data.load(name, seed=3), data.load(name, seed=3), data.load(name, seed=4)
    assert min(len(a.x_train), len(a.x_val), len(a.x_test)) > 0
    assert a.task in ("classification", "regression") and a.n_outputs >= 1
    for part in PARTS:
        x = getattr(a, part)
        assert len(x) and np.isfinite(x).all(), part
        np.testing.assert_array_equal(x, getattr(b, part), err_msg=part)
    assert not np.array_equal(a.x_train, c.x_train)
    assert not np.array_equal(a.x_test, c.x_test)


# ---------------------------------------------------------------- docstrings

ITEMS = [(kind, name) for kind, reg in REGISTRIES.items() for name in reg.names()]


@pytest.mark.parametrize("kind,name", ITEMS, ids=[f"{k}-{n}" for k, n in ITEMS])
def test_docstring_starts_with_a_one_sentence_summary(kind, name):
    # The item's own docstring (an alias has its own; inspect.getdoc would hand a class its base class's).
    doc = REGISTRIES[kind].doc(name)
    first = doc.split("\n")[0].strip()
    assert first, f"{kind} {name!r} has no docstring"
    assert first.endswith("."), f"{kind} {name!r}: the first docstring line is not a sentence ending in '.': {first!r}"
    assert not re.search(r"\.\s+[A-Z]", first), f"{kind} {name!r}: two sentences on the first line: {first!r}"


def test_every_optimizer_names_its_reference_where_list_shows_it():
    # `lossbench list optimizers` shows each item's summary: what to check it against (an
    # alias names the optimizer it is, whose summary names the reference)
    from lossbench import api

    references = ("torch.optim.", "lion-pytorch", "facebookresearch/schedule_free", "pytorch-lamb")
    shown = {name: summary for name, _, summary in api.catalog("optimizers")}
    for name, summary in shown.items():
        assert any(r in summary for r in references) or any(f"{other} " in summary.lower() for other in shown
                                                             if any(r in shown[other] for r in references)), \
            f"{name}: {summary!r}"
