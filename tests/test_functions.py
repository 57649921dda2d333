"""Test functions as problems (issue 14): the functions, their minima, the path a run
records, and configs that leave model and loss out."""

import numpy as np
import pytest

from lossbench import data
from lossbench.engine.functions import FUNCTIONS, Quadratic
from lossbench.engine.train import train
from lossbench.errors import ConfigError
from lossbench.sweep.config import load_experiment

TWO_D = ["rosenbrock", "beale", "branin", "saddle"]


def make(name):
    return FUNCTIONS[name](dims=5, condition=100.0, seed=3) if name == "quadratic" else FUNCTIONS[name]()


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_gradient_matches_central_differences(name):
    fn = make(name)
    rng = np.random.default_rng(0)
    for _ in range(5):
        x = rng.uniform(-2, 2, fn.dims)
        _, g = fn.f_and_grad(x)
        eps = 1e-6
        numeric = [(fn.value(x + eps * e) - fn.value(x - eps * e)) / (2 * eps) for e in np.eye(fn.dims)]
        np.testing.assert_allclose(g, numeric, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("name,value", [("rosenbrock", 0.0), ("beale", 0.0), ("branin", 0.397887), ("quadratic", 0.0)])
def test_the_minima_are_minima(name, value):
    fn = make(name)
    for m in fn.minima:
        f, g = fn.f_and_grad(m)
        assert f == pytest.approx(value, abs=1e-6)
        assert np.linalg.norm(g) < 1e-3, (name, m, g)
    assert fn.distance(fn.minima[0]) == 0.0


def test_gd_on_a_quadratic_walks_the_closed_form_path():
    """x_t = (I - lr A)^t x_0: the point after every step, as history records it."""
    d = data.load("quadratic", dims=2, condition=10.0, seed=4)
    lr, steps = 0.15, 25
    r = train(d, optimizer={"name": "gd", "lr": lr}, train={"epochs": steps})
    A = Quadratic(2, 10.0, 4).A
    x = np.ones(2)
    for t, row in enumerate(r.history, 1):
        x = x - lr * (A @ x)
        np.testing.assert_allclose([row["x0"], row["x1"]], x, rtol=1e-5, atol=1e-6, err_msg=f"step {t}")
        assert row["val_loss"] == pytest.approx(0.5 * x @ A @ x, rel=1e-5)
        assert row["step"] == t
    assert r.summary["test_distance"] == pytest.approx(np.linalg.norm(x), rel=1e-5)


def test_a_rate_past_2_over_the_largest_eigenvalue_diverges():
    d = data.load("quadratic", dims=2, condition=10.0)
    stable = train(d, optimizer={"name": "gd", "lr": 0.19}, train={"epochs": 1000})
    assert stable.status == "ok" and stable.summary["test_distance"] < 1e-6
    # 2 / 10 = 0.2: past it the stiff direction grows by |1 - 2.1| = 1.1 a step, to float32's overflow
    assert train(d, optimizer={"name": "gd", "lr": 0.21}, train={"epochs": 1000}).status == "diverged"


def test_start_and_noise():
    d = data.load("rosenbrock", start=[1.5, -0.5], noise=0.5)
    runs = [train(d, optimizer={"name": "sgd", "lr": 1e-4}, train={"epochs": 3}, seed=s) for s in (0, 0, 1)]
    first = [(r.history[0]["x0"], r.history[0]["x1"]) for r in runs]
    assert first[0] == first[1] != first[2]  # the seed draws the gradient noise
    quiet = train(data.load("rosenbrock", start=[1.5, -0.5]), optimizer={"name": "sgd", "lr": 1e-4},
                  train={"epochs": 3})
    assert quiet.history[0]["train_loss"] == pytest.approx(FUNCTIONS["rosenbrock"]().value([1.5, -0.5]), rel=1e-6)
    assert (quiet.history[0]["x0"], quiet.history[0]["x1"]) != first[0]


BASE = {"dataset": "rosenbrock", "optimizer": {"name": "adam", "lr": 0.05}, "train": {"epochs": 5}}


def test_a_config_leaves_model_and_loss_out_and_targets_val_loss():
    exp = load_experiment({**BASE, "target": {"metric": "val_loss", "value": 0.01},
                           "grid": {"optimizer.lr": [0.01, 0.1]}})
    assert exp.task == "function" and exp.metrics == ("val_loss", "val_distance")
    assert exp.runs[0].config["model"] == {"name": "point"} and exp.runs[0].config["loss"] == {"name": "function"}


@pytest.mark.parametrize("extra,message", [
    ({"model": "mlp"}, "model: a test function has no model (its parameters are the point, its loss is the function)"),
    ({"loss": "mse"}, "loss: a test function has no loss"),
    ({"dataset": {"name": "rosenbrock", "val_fraction": 0.2}},
     "dataset.val_fraction: does not apply to the test function 'rosenbrock': it has no data, got 0.2"),
    ({"dataset": {"name": "beale", "start": [1.0]}}, "dataset.start: must be a point of 2 numbers, got [1.0]"),
    ({"dataset": "moons", "model": "point", "loss": "cross_entropy"}, "model.name: must be one of"),
])
def test_test_function_mistakes_are_one_line(extra, message):
    with pytest.raises(ConfigError) as e:
        load_experiment({**BASE, **extra})
    assert message in str(e.value), str(e.value)
