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
    ({"train": {"epochs": 3, "batch_size": 32}}, "train.batch_size: does not apply to the test function 'rosenbrock'"),
    ({"dataset": "moons", "model": "point", "loss": "cross_entropy"}, "model.name: must be one of"),
])
def test_test_function_mistakes_are_one_line(extra, message):
    with pytest.raises(ConfigError) as e:
        load_experiment({**BASE, **extra})
    assert message in str(e.value), str(e.value)


# ---------------------------------------------------------------- plot --kind path

from typer.testing import CliRunner  # noqa: E402

from lossbench.cli import app  # noqa: E402

MOUNTAIN = """
name: m
dataset: {name: rosenbrock}
optimizer: sgd
train: {epochs: 30}
grid:
  optimizer: [{name: sgd, lr: 0.001}, {name: momentum, lr: 0.001}, {name: adam, lr: 0.05}, {name: adam, lr: 0.1}]
"""


@pytest.fixture(scope="module")
def mountain(tmp_path_factory):
    d = tmp_path_factory.mktemp("m")
    (d / "m.yaml").write_text(MOUNTAIN)
    r = CliRunner().invoke(app, ["run", str(d / "m.yaml"), "--out", str(d / "out"), "-q"])
    assert r.exit_code == 0, r.output
    return d


def test_the_paths_drawn_are_the_recorded_points_from_the_start(mountain):
    from lossbench import api
    from lossbench.analysis import paths

    p = api.load_problem(mountain / "out")
    fn = FUNCTIONS["rosenbrock"]()
    drawn = paths.paths(p, lambda run: fn)
    assert [(row, panel, label) for row, panel, label, *_ in drawn] == [
        ("", "sgd", "lr=0.001"), ("", "momentum", "lr=0.001"), ("", "adam", "lr=0.05"), ("", "adam", "lr=0.1")]
    fig, handles = paths.figure(p, lambda run: fn, drawn)
    assert len(fig.axes) == 3 and [ax.get_title() for ax in fig.axes] == ["sgd", "momentum", "adam"]
    line, _, xy = handles[2]
    h = p.history[p.history.run_id == p.runs[p.runs["optimizer.lr"] == 0.05].run_id.iloc[0]]
    np.testing.assert_array_equal(xy[0], fn.start)  # every path starts at the start
    np.testing.assert_array_equal(xy[1:], h[["x0", "x1"]].to_numpy())
    np.testing.assert_array_equal(line.get_xydata(), xy)


def test_a_grid_over_test_functions_draws_a_row_per_function_over_its_own_map(tmp_path):
    (tmp_path / "c.yaml").write_text(
        "dataset: rosenbrock\noptimizer: sgd\ntrain: {epochs: 5}\n"
        "grid:\n  dataset: [{name: rosenbrock}, {name: quadratic, condition: 50, start: [1.0, -1.0]}]\n"
        "  optimizer: [{name: sgd, lr: 0.001}, {name: adam, lr: 0.1}]\n")
    assert CliRunner().invoke(app, ["run", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "o"), "-q"]).exit_code == 0
    r = CliRunner().invoke(app, ["plot", str(tmp_path / "o"), "--kind", "path", "--out", str(tmp_path / "p.png")])
    assert r.exit_code == 0, r.output
    from lossbench import api
    from lossbench.analysis import paths

    made = []
    real = paths.figure

    def spy(p, function_of, *a, **k):
        made.append(real(p, function_of, *a, **k))
        return made[-1]

    paths.figure = spy
    try:
        api.plot([tmp_path / "o"], "path", out=tmp_path / "q.png")
    finally:
        paths.figure = real
    fig, handles = made[0]
    assert [ax.get_title() for ax in fig.axes] == ["rosenbrock, sgd", "rosenbrock, adam", "quadratic, sgd",
                                                   "quadratic, adam"]
    assert [tuple(xy[0]) for _, _, xy in handles] == [(-0.5, 1.5), (-0.5, 1.5), (1.0, -1.0), (1.0, -1.0)]


def test_plot_path_and_its_animation(mountain, tmp_path):
    r = CliRunner().invoke(app, ["plot", str(mountain / "out"), "--kind", "path", "--out", str(tmp_path / "p.png"),
                                 "--animate", str(tmp_path / "p.gif")])
    assert r.exit_code == 0, r.output
    from PIL import Image

    assert Image.open(tmp_path / "p.png").size[0] > 1000
    gif = Image.open(tmp_path / "p.gif")
    assert gif.n_frames == 30  # one per step when there are fewer steps than 40 frames


@pytest.mark.parametrize("args,message", [
    (["--animate", "x.avi"], "--animate: x.avi: the file must end in .gif or .mp4"),
    (["--kind", "curves", "--animate", "x.gif"], "--animate: draws --kind path only"),
])
def test_plot_path_mistakes_are_one_line(mountain, args, message):
    r = CliRunner().invoke(app, ["plot", str(mountain / "out"), "--kind", "path", *args])
    assert r.exit_code == 2 and message in r.output and r.output.count("\n") == 1, r.output


def test_a_path_plot_of_data_says_there_is_no_path(tmp_path):
    (tmp_path / "c.yaml").write_text("dataset: {name: moons, n_samples: 100}\nmodel: linear\nloss: cross_entropy\n"
                                     "optimizer: sgd\ntrain: {epochs: 1}\n")
    assert CliRunner().invoke(app, ["run", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "o"), "-q"]).exit_code == 0
    r = CliRunner().invoke(app, ["plot", str(tmp_path / "o"), "--kind", "path"])
    assert r.exit_code == 2 and "its history has no path (x0, x1, ...): --kind path draws test functions" in r.output
