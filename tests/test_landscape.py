"""Loss landscapes: saved parameters (train.save_params), the engine's lines, planes,
filter normalization and sharpness, and `lossbench landscape` end to end."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import lossbench
from lossbench import api
from lossbench.cli import app
from lossbench.data import load_spec
from lossbench.engine import landscape as ls
from lossbench.engine import losses, nn
from lossbench.engine.nn.layers import Tensor
from lossbench.engine.train import TrainConfig, encode_targets, train, train_stack
from lossbench.sweep import store
from lossbench.sweep.config import load_experiment

runner = CliRunner()
DATA = {"name": "blobs", "n_samples": 240, "n_features": 4, "n_classes": 3}


def config(save_params=True, optimizer="gd", epochs=3, **extra) -> dict:
    train_cfg = {"epochs": epochs, "batch_size": 32}
    if save_params is not None:
        train_cfg["save_params"] = save_params
    return {"name": "land", "dataset": DATA, "model": {"name": "mlp", "hidden": [8]}, "loss": "cross_entropy",
            "optimizer": {"name": optimizer, "lr": 0.1}, "train": train_cfg, "seeds": [0], **extra}


def npy_files(out, rid):
    return sorted(p.name for p in (out / "params" / rid).iterdir())


# -- saving parameters ---------------------------------------------------------------------

def test_save_params_writes_initial_final_and_each_epoch(tmp_path):
    res = lossbench.run(config("every_epoch"), tmp_path)
    rid = res.runs["run_id"].iloc[0]
    assert npy_files(tmp_path, rid) == ["epoch_001.npy", "epoch_002.npy", "epoch_003.npy", "final.npy",
                                        "initial.npy"]
    # the record holds no arrays; the files are the run's own, trained again here alone
    assert "params" not in json.loads((tmp_path / "records" / f"{rid}.json").read_text())
    d = load_spec(DATA, {})
    alone = train(d, model={"name": "mlp", "hidden": [8]}, loss="cross_entropy",
                  optimizer={"name": "gd", "lr": 0.1}, train={"epochs": 3, "batch_size": 32,
                                                              "save_params": "every_epoch"}, seed=0)
    for name, array in alone.params.items():
        np.testing.assert_array_equal(np.load(tmp_path / "params" / rid / f"{name}.npy"), array)
    # final is the last epoch's point, and the initial point is the seed's initialization
    np.testing.assert_array_equal(alone.params["final"], alone.params["epoch_003"])
    one = train(d, model={"name": "mlp", "hidden": [8]}, loss="cross_entropy", optimizer={"name": "gd", "lr": 0.1},
                train={"epochs": 1, "batch_size": 32, "save_params": True}, seed=0)
    np.testing.assert_array_equal(one.params["final"], alone.params["epoch_001"])  # each epoch its own point
    assert not np.array_equal(alone.params["initial"], alone.params["final"])


def test_save_params_true_keeps_initial_and_final_only(tmp_path):
    res = lossbench.run(config(True), tmp_path)
    assert npy_files(tmp_path, res.runs["run_id"].iloc[0]) == ["final.npy", "initial.npy"]


def test_params_are_written_atomically_before_the_record(tmp_path, monkeypatch):
    """Every .npy goes through atomic_write (temporary file, fsync, rename), and all of
    them before the record: a run is recorded only with all of its files."""
    written = []
    real = store.atomic_write

    def spy(path, text):
        written.append(path)
        real(path, text)

    monkeypatch.setattr(store, "atomic_write", spy)
    lossbench.run(config("every_epoch"), tmp_path)
    kinds = [p.parent.parent.name if p.suffix == ".npy" else p.parent.name for p in written
             if p.suffix == ".npy" or p.parent.name == "records"]  # not config.yaml, manifest.json, tables
    assert kinds == ["params"] * 5 + ["records"]  # the 5 arrays, then the record
    assert not list(tmp_path.glob("params/*/.*.tmp"))


def test_a_rerun_keeps_the_files_of_recorded_runs(tmp_path):
    res = lossbench.run(config(True), tmp_path)
    rid = res.runs["run_id"].iloc[0]
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "params" / rid).iterdir()}
    lossbench.run(config(True), tmp_path)  # skips the recorded run
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "params" / rid).iterdir()} == before


def test_stacked_runs_each_save_their_own_row():
    d = load_spec(DATA, {})
    runs = [dict(model={"name": "mlp", "hidden": [8]}, loss=loss, optimizer=opt,
                 train={"epochs": 2, "batch_size": 32, "save_params": "every_epoch"}, seed=seed)
            for seed, loss, opt in [(0, "cross_entropy", {"name": "sgd", "lr": 0.1}),
                                    (1, "mse", {"name": "adam", "lr": 0.01}),
                                    (2, "cross_entropy", {"name": "sgd", "lr": 0.05})]]
    stacked = train_stack(d, runs)
    for spec, got in zip(runs, stacked):
        alone = train(d, **spec)
        assert sorted(got.params) == ["epoch_001", "epoch_002", "final", "initial"]
        for name in alone.params:
            np.testing.assert_array_equal(got.params[name], alone.params[name])
    assert not np.array_equal(stacked[0].params["final"], stacked[2].params["final"])


def test_run_ids_do_not_change_without_save_params():
    """The ids of configs that do not set train.save_params are those they had before it
    existed (computed at the commit before it), so existing results keep their runs."""
    exp = load_experiment("configs/quickstart.yaml")
    assert [s.run_id for s in exp.runs][:3] == ["a260de28b692", "6bb8fb707899", "3fc82fb160ac"]
    assert TrainConfig.of({}).save_params is False
    assert train(load_spec(DATA, {}), model={"name": "mlp", "hidden": [8]}, loss="cross_entropy",
                 optimizer="sgd", train={"epochs": 1}, seed=0).params == {}


# -- the engine ------------------------------------------------------------------------------

def problem(seed=0):
    d = load_spec(DATA, {})
    loss = losses.build("cross_entropy")
    n_out, encode = encode_targets(loss, "cross_entropy", d)
    return d, loss, n_out, encode


def test_line_ends_are_the_recorded_initial_loss_and_the_final_parameters_loss(tmp_path):
    """alpha 0: with gd (one full batch an epoch, no dropout) the first epoch's recorded
    train_loss is the loss of the initial parameters on the whole training set, in the
    same mode (no dropout, so training and evaluation mode agree): the line's, exactly in
    meaning. alpha 1: the recorded final_val_loss is the final parameters' loss on the
    validation split in evaluation mode, so the same line on that split gives it."""
    res = lossbench.run(config(True), tmp_path)
    rid = res.runs["run_id"].iloc[0]
    land, _ = api.landscape(tmp_path, kind="line", resolution=5)  # alphas -0.5, 0, 0.5, 1, 1.5
    first = res.history[res.history["run_id"] == rid].sort_values("epoch")["train_loss"].iloc[0]
    assert land.coords[0][1] == 0.0 and land.coords[0][3] == 1.0
    assert land.loss[1] == pytest.approx(first, rel=1e-6)
    d, loss, n_out, encode = problem()
    net = nn.build("mlp", d.n_features, n_out, 0, None, hidden=[8])
    start, end = (np.load(tmp_path / "params" / rid / f"{n}.npy") for n in ("initial", "final"))
    on_val = ls.line(ls.Surface(net, loss, d.x_val, encode(d.y_val)), start, end, np.array([1.0]))
    assert on_val[0] == pytest.approx(res.runs["final_val_loss"].iloc[0], rel=1e-6)
    net.params[...] = end  # and on the training set: a direct evaluation of the final parameters
    assert land.loss[3] == pytest.approx(loss.value(net.predict(d.x_train), encode(d.y_train)), rel=1e-6)
    assert land.final_loss == pytest.approx(land.loss[3], rel=1e-12)


def test_filter_normalization_by_hand():
    net = nn.build("mlp", 3, 2, 0, None, hidden=[4])  # Linear(3, 4) weight (3, 4) + bias, ReLU, Linear(4, 2)
    theta = net.params.astype(np.float64)
    rng = np.random.default_rng(1)
    d = rng.standard_normal(theta.shape)
    got = ls.filter_normalize(d, theta, net.layout)
    w1, b1, w2, b2 = np.split(theta, [12, 16, 24])
    g1, gb1, g2, gb2 = np.split(got, [12, 16, 24])
    r1 = d[:12].reshape(3, 4)
    for j in range(4):  # output neuron j of the first layer: column j of its (n_in, n_out) weight
        col = r1[:, j] * np.linalg.norm(w1.reshape(3, 4)[:, j]) / np.linalg.norm(r1[:, j])
        np.testing.assert_allclose(g1.reshape(3, 4)[:, j], col, rtol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(g2.reshape(4, 2), axis=0), np.linalg.norm(w2.reshape(4, 2), axis=0),
                               rtol=1e-12)
    assert not gb1.any() and not gb2.any()  # biases zero in the direction
    # a convolution's filters are its output channels: the first axis of (out, in, k, k)
    conv = [Tensor("0.Conv2d.weight", (3, 2, 2, 2)), Tensor("0.Conv2d.bias", (3,))]
    th, dc = rng.standard_normal(27), rng.standard_normal(27)
    gc = ls.filter_normalize(dc, th, conv)
    np.testing.assert_allclose(np.linalg.norm(gc[:24].reshape(3, 8), axis=1),
                               np.linalg.norm(th[:24].reshape(3, 8), axis=1), rtol=1e-12)
    assert not gc[24:].any()


def test_hessian_top_eigenvalue_of_linear_regression_mse():
    """mse is the mean over the n examples (one output): L = |Xa w - y|^2 / n with Xa = [X, 1]
    (weight then bias, the layout's order), so H = 2 Xa^T Xa / n."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 5)).astype(np.float32) * np.float32([1, 2, 3, 0.5, 4])
    y = (x @ rng.standard_normal((5, 1)) + 0.3).astype(np.float32)
    net = nn.build("linear", 5, 1, 0, None)
    surface = ls.Surface(net, losses.build("mse"), x, y, chunk=64)
    lam, iters = ls.top_eigenvalue(surface.gradient, net.params)
    xa = np.hstack([x, np.ones((200, 1), np.float32)]).astype(np.float64)
    expected = np.linalg.eigvalsh(2 * xa.T @ xa / len(x)).max()
    assert abs(lam - expected) <= 1e-3 * expected, (lam, expected)
    assert iters < 100


def test_plane_centre_is_the_final_loss_and_directions_are_seeded():
    d, loss, n_out, encode = problem()
    res = train(d, model={"name": "mlp", "hidden": [8]}, loss="cross_entropy", optimizer={"name": "adam"},
                train={"epochs": 3, "save_params": True}, seed=0)
    net = nn.build("mlp", d.n_features, n_out, 0, None, hidden=[8])
    surface = ls.Surface(net, loss, d.x_train, encode(d.y_train), k=4, chunk=50)  # blocks and chunks: short ends
    final = res.params["final"]
    d1, d2 = ls.random_directions(final, net.layout, seed=3)
    np.testing.assert_array_equal(ls.random_directions(final, net.layout, seed=3)[0], d1)
    a = np.linspace(-1, 1, 7)
    z = ls.plane(surface, final, d1, d2, a, a, rows=5)
    net.params[...] = final
    direct = loss.value(net.predict(d.x_train), encode(d.y_train))
    assert z.shape == (7, 7) and z[3, 3] == pytest.approx(direct, rel=1e-6)
    # a corner is theta + d1 - d2 (columns a, rows b), evaluated alone
    net.params[...] = (final + a[-1] * d1 + a[0] * d2).astype(np.float32)
    assert z[0, -1] == pytest.approx(loss.value(net.predict(d.x_train), encode(d.y_train)), rel=1e-6)
    assert z.min() <= z[3, 3] < z.max()


def test_pca_directions_by_hand():
    """Rows of path - final along e0 (3) and e1 (-1): the principal directions are e0 then
    e1 (up to sign), with 9/10 and 1/10 of the (uncentred, as Li et al.) variance."""
    final = np.array([1.0, 1, 1, 1])
    path = final + np.array([[3.0, 0, 0, 0], [0, -1, 0, 0], [0, 0, 0, 0]])
    dirs, xy, var = ls.pca_directions(path, final)
    np.testing.assert_allclose(np.abs(dirs), [[1, 0, 0, 0], [0, 1, 0, 0]], atol=1e-12)
    np.testing.assert_allclose(var, [0.9, 0.1], rtol=1e-12)
    np.testing.assert_allclose(np.abs(xy), [[3, 0], [0, 1], [0, 0]], atol=1e-12)


# -- the command -------------------------------------------------------------------------------

def write_config(tmp_path, cfg):
    import yaml
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_cli_landscape_end_to_end(tmp_path):
    out = tmp_path / "res"
    cfg = config("every_epoch", grid={"optimizer.name": ["sgd", "adam"]})
    r = runner.invoke(app, ["run", write_config(tmp_path, cfg), "--out", str(out), "-q"])
    assert r.exit_code == 0, r.output
    ids = json.loads((out / "manifest.json").read_text())["run_ids"]
    for kind in ("line", "plane", "pca"):
        png = tmp_path / f"{kind}.png"
        r = runner.invoke(app, ["landscape", str(out), "--by", "optimizer.name=adam", "--kind", kind,
                                "--resolution", "7", "--samples", "100", "--out", str(png)])
        assert r.exit_code == 0, r.output
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "optimizer.name=adam" in r.output and "100 training examples" in r.output
        lam = float(r.output.split("sharpness (top Hessian eigenvalue): ")[1].split()[0])
        assert lam > 0
    r = runner.invoke(app, ["landscape", str(out), "--run", ids[0], "--run", ids[1], "--resolution", "5"])
    assert r.exit_code == 0, r.output
    assert (out / "landscape-line.png").is_file()


@pytest.mark.parametrize("save, args, message", [
    (None, [], "has no saved parameters"),
    (True, ["--kind", "pca"], "needs train.save_params: every_epoch"),
    (True, ["--run", "0123456789ab"], "unknown run id '0123456789ab'"),
    (True, ["--by", "seed=5"], "no finished (ok) run matches seed=5"),
    (True, ["--by", "optimizer.name=adam"], "--by: optimizer.name is not swept in "),
    (True, ["--by", "optimizer.name"], "--by: 'optimizer.name': must be KEY=VALUE"),
    (True, ["--kind", "valley"], "--kind"),
])
def test_cli_landscape_errors_are_one_line(tmp_path, save, args, message):
    out = tmp_path / "res"
    assert runner.invoke(app, ["run", write_config(tmp_path, config(save, epochs=1)), "--out", str(out), "-q"]) \
        .exit_code == 0
    r = runner.invoke(app, ["landscape", str(out), *args])
    lines = r.output.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), r.output
    assert message in lines[0], lines[0]
    if save is None:
        assert "set train.save_params: true" in lines[0]


@pytest.mark.parametrize("save", [True, None])
def test_a_test_functions_landscape_points_to_its_path_plot(tmp_path, save):
    out = tmp_path / "res"
    train = "{epochs: 3, save_params: true}" if save else "{epochs: 3}"
    (tmp_path / "f.yaml").write_text(f"dataset: rosenbrock\noptimizer: sgd\ntrain: {train}\n")
    assert runner.invoke(app, ["run", str(tmp_path / "f.yaml"), "--out", str(out), "-q"]).exit_code == 0
    r = runner.invoke(app, ["landscape", str(out)])
    expected = "is a test function's: its landscape is the function itself" if save else "has no saved parameters"
    assert r.exit_code == 2 and expected in r.output and r.output.count("\n") == 1, r.output
