import math

import numpy as np
import pytest
import realdata

from lossbench import data, losses, optimizers
from lossbench.engine import nn
from lossbench.errors import ConfigError
from lossbench.train import train

MLP = {"name": "mlp", "hidden": [32]}


@pytest.fixture(scope="module")
def moons():
    return data.load("moons", seed=0)


@pytest.fixture(scope="module")
def regression():
    return data.load("regression", seed=0)


def test_learns_moons_and_records_history(moons):
    r = train(moons, model=MLP, loss="cross_entropy", optimizer={"name": "adam", "lr": 0.01},
              train={"epochs": 15, "batch_size": 32}, seed=0)
    assert r.status == "ok" and r.epochs == 15 and len(r.history) == 15
    assert r.summary["test_accuracy"] > 0.95
    assert r.history[-1]["train_loss"] < 0.5 * r.history[0]["train_loss"]
    row = r.history[-1]
    assert set(row) == {"epoch", "step", "train_loss", "val_loss", "val_accuracy", "lr", "grad_norm", "elapsed_s"}
    assert row["step"] == 15 * math.ceil(len(moons.x_train) / 32)
    assert r.summary["best_val_accuracy"] == max(h["val_accuracy"] for h in r.history)
    assert r.n_params == 2 * 32 + 32 + 32 * 2 + 2
    elapsed = [h["elapsed_s"] for h in r.history]
    assert elapsed == sorted(elapsed)


def test_same_seed_same_numbers_other_seed_differs(moons):
    kw = dict(model={"name": "mlp", "hidden": [16], "dropout": 0.2}, loss="cross_entropy",
              optimizer={"name": "sgd", "lr": 0.1}, train={"epochs": 3})
    a, b, c = train(moons, seed=1, **kw), train(moons, seed=1, **kw), train(moons, seed=2, **kw)
    strip = lambda h: [{k: v for k, v in r.items() if k != "elapsed_s"} for r in h]  # noqa: E731
    assert strip(a.history) == strip(b.history) and a.summary == b.summary
    assert strip(a.history) != strip(c.history)


def test_gd_uses_the_full_batch(moons):
    r = train(moons, model=MLP, loss="cross_entropy", optimizer={"name": "gd", "lr": 0.5}, train={"epochs": 4}, seed=0)
    assert [h["step"] for h in r.history] == [1, 2, 3, 4]
    r = train(moons, model=MLP, loss="cross_entropy", optimizer="sgd", train={"epochs": 2, "batch_size": "full"},
              seed=0)
    assert r.history[-1]["step"] == 2


def test_divergence_stops_the_run(moons):
    r = train(moons, model=MLP, loss="mse", optimizer={"name": "sgd", "lr": 1e6}, train={"epochs": 20}, seed=0)
    assert r.status == "diverged" and r.epochs < 20
    assert math.isnan(r.summary["best_val_accuracy"]) and math.isnan(r.summary["test_accuracy"])


def test_early_stopping_on_patience(moons):
    # lr so small that nothing improves by min_delta: stops after `patience` epochs
    r = train(moons, model=MLP, loss="cross_entropy", optimizer={"name": "sgd", "lr": 1e-9},
              train={"epochs": 50, "early_stopping": {"monitor": "val_accuracy", "patience": 3, "min_delta": 0.01}},
              seed=0)
    assert r.status == "ok" and r.epochs == 4  # epoch 1 sets the best, then 3 without improvement


def test_schedule_is_applied_and_grad_norm_is_recorded_before_clipping(moons):
    r = train(moons, model=MLP, loss="cross_entropy", optimizer={"name": "sgd", "lr": 0.2},
              train={"epochs": 4, "schedule": {"name": "step", "step_size": 2, "gamma": 0.5}, "clip_grad_norm": 1e-3},
              seed=0)
    assert [h["lr"] for h in r.history] == pytest.approx([0.2, 0.2, 0.1, 0.1])
    assert r.history[0]["grad_norm"] > 1e-3  # recorded before clipping


def test_clipping_scales_the_step_to_max_norm(moons, monkeypatch):
    # One full-batch gd step; catch the model train() builds to see its weights before and after.
    built = []

    def spy(*args, **kwargs):
        net = build(*args, **kwargs)
        built.append((net, net.params.copy()))
        return net

    build = nn.build
    monkeypatch.setattr(nn, "build", spy)
    lr, max_norm = 0.5, 1e-3
    train(moons, model="linear", loss="cross_entropy", optimizer={"name": "gd", "lr": lr},
          train={"epochs": 1, "clip_grad_norm": max_norm}, seed=0)
    (net, p0), = built
    p1 = net.params.copy()

    # The same step by hand: full-batch gradient at p0, scaled as torch.nn.utils.clip_grad_norm_ does.
    net.params[:] = p0
    ce = losses.build("cross_entropy")
    g = net.backward(ce.grad(net.forward(moons.x_train, True), moons.y_train)).astype(np.float64)
    norm = np.linalg.norm(g)
    assert norm > 100 * max_norm  # so clipping has something to do
    np.testing.assert_allclose(p1, p0 - lr * g * (max_norm / (norm + 1e-6)), rtol=1e-5, atol=1e-8)
    assert np.linalg.norm(p1.astype(np.float64) - p0) == pytest.approx(lr * max_norm, rel=1e-4)


@pytest.mark.parametrize("loss,n_out", [("mse", 2), ("huber", 2), ("bce", 1), ("hinge", 2), ("squared_hinge", 2),
                                        ("focal", 1), ("focal_softmax", 2), ("soft_margin", 1), ("binary_hinge", 1),
                                        ("quantile", 2)])
def test_every_classification_pairing_learns(moons, loss, n_out):
    r = train(moons, model=MLP, loss=loss, optimizer={"name": "adam", "lr": 0.01},
              train={"epochs": 15, "batch_size": 32}, seed=0)
    assert r.summary["test_accuracy"] > 0.9
    assert r.n_params == 2 * 32 + 32 + 32 * n_out + n_out


def test_bce_on_many_classes_is_one_vs_rest():
    blobs = data.load("blobs", seed=0)
    r = train(blobs, model="linear", loss="bce", optimizer={"name": "adam", "lr": 0.05}, train={"epochs": 10}, seed=0)
    assert r.n_params == 2 * 3 + 3 and r.summary["test_accuracy"] > 0.8


def test_regression_metrics_and_robust_losses(regression):
    res = {}
    for loss in ("mse", "mae", "huber", "log_cosh"):
        r = train(regression, model={"name": "mlp", "hidden": [64]}, loss=loss, optimizer={"name": "adam", "lr": 0.01},
                  train={"epochs": 30, "batch_size": 32}, seed=0)
        assert set(r.history[0]) >= {"val_mae", "val_r2"}
        res[loss] = r.summary["test_mae"]
    # outliers in the training targets pull MSE off; the robust losses resist them
    assert res["mae"] < res["mse"] and res["huber"] < res["mse"]


def test_model_outputs_and_targets_of_the_new_losses(moons):
    from lossbench.engine.train import encode_targets
    regr = data.load("heteroscedastic", seed=0, n_samples=50)
    for name, d, n_out, first in [("soft_margin", moons, 1, [moons.y_train[0]]),
                                  ("binary_hinge", moons, 1, [moons.y_train[0]]),
                                  ("focal", moons, 1, [moons.y_train[0]]),
                                  ("gaussian_nll", moons, 4, np.eye(2)[moons.y_train[0]]),
                                  ("gaussian_nll", regr, 2, regr.y_train[0]),
                                  ("poisson_nll", regr, 1, regr.y_train[0])]:
        n, encode = encode_targets(losses.build(name), name, d)
        assert n == n_out, name
        np.testing.assert_array_equal(encode(d.y_train)[0], first)


def test_poisson_nll_learns_counts_and_its_metrics_see_the_rate():
    counts = data.load("counts", seed=0)
    r = train(counts, model="linear", loss="poisson_nll", optimizer={"name": "adam", "lr": 0.05},
              train={"epochs": 20, "batch_size": 32}, seed=0)
    assert r.n_params == 2 + 1
    # the metrics compare exp(output), the rate, with the counts: a log-linear model fits them
    assert r.summary["test_r2"] > 0.4
    mse = train(counts, model="linear", loss="mse", optimizer={"name": "adam", "lr": 0.05},
                train={"epochs": 20, "batch_size": 32}, seed=0)
    assert r.summary["test_r2"] > mse.summary["test_r2"]


def test_gaussian_nll_predicts_a_mean_and_a_variance_that_follows_the_noise():
    het = data.load("heteroscedastic", seed=0, n_samples=2000, normalize="none")
    r = train(het, model=MLP, loss="gaussian_nll", optimizer={"name": "adam", "lr": 0.01},
              train={"epochs": 20, "batch_size": 64}, seed=0)
    assert r.n_params == 1 * 32 + 32 + 32 * 2 + 2  # two outputs for one target: mean and raw variance
    assert r.summary["test_r2"] > 0.5  # the r2 of the mean half
    # the same model trained by hand: its variance grows with |x| as the noise's does
    loss, net = losses.build("gaussian_nll"), nn.build("mlp", 1, 2, 0, hidden=[32])
    opt = optimizers.build("adam", [net.params], lr=0.01)
    for _ in range(400):
        opt.step([net.backward(loss.grad(net.forward(het.x_train, True), het.y_train))])
    x = np.array([[0.0], [1.9]], np.float32)
    std = np.sqrt(np.log1p(np.exp(net.predict(x)[:, 1])))
    assert std[0] < 0.3 and 0.6 < std[1] < 1.5  # the noise's std: 0.1 at 0, 1.05 at 1.9


def test_classification_loss_on_regression_data_is_a_config_error(regression):
    with pytest.raises(ConfigError, match=r"^loss\.name: must be a regression loss on the regression dataset "):
        train(regression, model="linear", loss="cross_entropy", optimizer="sgd", train={"epochs": 1})


@pytest.mark.parametrize(
    "train_cfg,pattern",
    [({"epochs": 0}, "epochs"), ({"batch_size": 0}, "batch_size"), ({"batch_size": "all"}, "batch_size"),
     ({"early_stopping": {"monitor": "val_acc"}}, "monitor"), ({"clip_grad_norm": -1}, "clip_grad_norm")],
)
def test_bad_train_options(moons, train_cfg, pattern):
    with pytest.raises(ConfigError, match=pattern):
        train(moons, model="linear", loss="cross_entropy", optimizer="sgd", train=train_cfg)


@pytest.mark.slow
@realdata.needs_fashion
def test_fashion_mnist_mlp_adam_two_epochs():
    fm = data.load("fashion_mnist", seed=0, path=str(realdata.FASHION))
    r = train(fm, model={"name": "mlp", "hidden": [256, 128]}, loss="cross_entropy",
              optimizer={"name": "adam", "lr": 1e-3}, train={"epochs": 2, "batch_size": 128}, seed=0)
    assert r.status == "ok"
    assert r.summary["test_accuracy"] >= 0.85


def test_watching_a_missing_validation_split_is_a_config_error():
    d = data.load("moons", seed=0, val_fraction=0)
    for cfg in ({"early_stopping": {"patience": 3}}, {"schedule": {"name": "reduce_on_plateau"}}):
        with pytest.raises(ConfigError, match=r"^dataset\.val_fraction: must be > 0 when train\.early_stopping or "
                                              r"reduce_on_plateau watch the validation split, got 0$"):
            train(d, model="linear", loss="cross_entropy", optimizer="sgd", train=cfg)


def test_cosine_to_zero_with_adam_does_not_crash(moons):
    r = train(moons, model=MLP, loss="cross_entropy", optimizer={"name": "adam", "lr": 0.01},
              train={"epochs": 6, "schedule": {"name": "cosine", "T_max": 3}}, seed=0)
    assert r.status == "ok" and r.history[3]["lr"] == 0.0


@pytest.mark.parametrize("model,train_cfg,pattern", [
    ({"name": "mlp", "dropout": -0.5}, {}, "model.dropout"),
    ("linear", {"shuffle": "no"}, "train.shuffle"),
    ("linear", {"early_stopping": {"patience": True}}, "patience"),
])
def test_silently_wrong_values_are_refused(moons, model, train_cfg, pattern):
    with pytest.raises(ConfigError, match=pattern):
        train(moons, model=model, loss="cross_entropy", optimizer="sgd", train=train_cfg)


def test_poisson_nll_is_refused_on_negative_targets(tmp_path):
    # a negative count has no likelihood: exp(x) - t x falls without bound as x does
    with pytest.raises(ConfigError, match=r"^loss\.name: needs targets >= 0 \(counts or rates\), and 'regression' "
                                          r"has targets down to -\d.*, got 'poisson_nll'$"):
        train(data.load("regression", seed=0), model="linear", loss="poisson_nll", optimizer="sgd")
    counts = train(data.load("counts", seed=0), model="linear", loss="poisson_nll", optimizer="sgd",
                   train={"epochs": 1})
    assert counts.status == "ok"
    from lossbench.sweep.config import load_experiment
    cfg = {"name": "p", "dataset": "regression", "model": "linear", "loss": "poisson_nll", "optimizer": "sgd"}
    with pytest.raises(ConfigError, match=r"loss\.name: needs targets >= 0"):
        load_experiment(cfg)


LBFGS = {"name": "mlp", "hidden": [8]}


@pytest.mark.parametrize("opt", [{"name": "lbfgs", "max_iter": 4}, {"name": "lbfgs", "line_search_fn": "strong_wolfe",
                                                                     "max_iter": 5}])
def test_lbfgs_takes_one_full_batch_step_an_epoch_evaluating_as_torch_would(moons, monkeypatch, opt):
    """Each epoch is one step(closure) on the whole training set (batch_size 8 notwithstanding):
    its history rows count one step an epoch and record the loss before the step, which
    falls. At every step,
    torch.optim.LBFGS, given the same closure (the training loop's: forward, loss and
    backward on the batch) from the same parameters and carrying its own state across
    the epochs, calls it as many times and ends at the same parameters (float32
    rounding through a model's forward and backward on 720 samples, 4 to 7 evaluations a
    step, growing with each epoch as the two histories drift apart: measured up to 1.7e-5
    at epoch 3 on parameters of size 3, 5e-6 relative; rtol 1e-4, atol 2e-5)."""
    torch = pytest.importorskip("torch")
    from lossbench.engine.optimizers.lbfgs import LBFGS as Opt

    real, steps, ref = Opt.step_closure, [], {}

    def spy(self, closure):
        x0 = self.flat.copy()
        loss, grad = closure()  # the loop's first call: what it computed and recorded, at x0
        first = loss, grad.copy()  # (the model's gradient buffer, which later calls overwrite)
        if not ref:
            ref["p"] = torch.tensor(x0.copy(), requires_grad=True)
            ref["opt"] = torch.optim.LBFGS([ref["p"]], **{k: v for k, v in opt.items() if k != "name"})
        tp, theirs_calls, ours_calls = ref["p"], [], []
        with torch.no_grad():
            tp.copy_(torch.from_numpy(x0))

        def torch_closure():
            theirs_calls.append(1)
            self.flat[...] = tp.detach().numpy()
            loss, grad = closure() if theirs_calls[1:] else first
            tp.grad = torch.tensor(np.array(grad).reshape(-1))
            return torch.tensor(loss, dtype=torch.float64)

        ref["opt"].step(torch_closure)
        self.flat[...] = x0

        def counting():
            ours_calls.append(1)
            return closure() if ours_calls[1:] else first

        loss = real(self, counting)
        steps.append((len(ours_calls), len(theirs_calls), self.flat.copy(), tp.detach().numpy().copy(), loss))
        return loss

    monkeypatch.setattr(Opt, "step_closure", spy)
    r = train(moons, model=LBFGS, loss="cross_entropy", optimizer=opt, train={"epochs": 3, "batch_size": 8}, seed=0)
    assert r.status == "ok" and [h["step"] for h in r.history] == [1, 2, 3]
    losses_ = [h["train_loss"] for h in r.history]
    assert all(b < a for a, b in zip(losses_, losses_[1:])), losses_
    assert [s[4] for s in steps] == pytest.approx(losses_, rel=1e-6)  # the loss before each step is recorded
    for epoch, (ours, theirs, p, tp, _) in enumerate(steps, 1):
        assert ours == theirs > 1, f"epoch {epoch}: {ours} closure calls, torch {theirs}"
        np.testing.assert_allclose(p, tp, rtol=1e-4, atol=2e-5, err_msg=f"epoch {epoch}")


def test_lbfgs_refuses_gradient_clipping(moons):
    with pytest.raises(ConfigError, match=r"^train\.clip_grad_norm: must be null with lbfgs \(its line search and "
                                          r"curvature pairs need the true gradient\), got 1\.0$"):
        train(moons, model="linear", loss="cross_entropy", optimizer="lbfgs", train={"clip_grad_norm": 1.0})
    from lossbench.sweep.config import load_experiment
    cfg = {"name": "c", "dataset": "moons", "model": "linear", "loss": "cross_entropy", "optimizer": "lbfgs",
           "train": {"clip_grad_norm": 1.0}}
    with pytest.raises(ConfigError, match=r"^config: train\.clip_grad_norm: must be null with lbfgs .*, got 1\.0$"):
        load_experiment(cfg)  # before any run starts


def test_lbfgs_runs_alone_in_train_stack(moons):
    from lossbench.engine.train import train_stack
    runs = [dict(model="linear", loss="cross_entropy", optimizer=o, train={"epochs": 1}, seed=0)
            for o in ("lbfgs", "gd")]
    with pytest.raises(ValueError, match=r"^lbfgs runs alone .*not with 1 other runs$"):
        train_stack(moons, runs)
    assert [r.status for r in train_stack(moons, runs[:1])] == ["ok"]


def test_lbfgs_diverges_cleanly_when_a_closure_loss_is_not_finite(moons):
    # lr 300 without a line search: epoch 1 is fine, and in epoch 2 the step's own
    # evaluations overflow (its first loss, the loop's, is finite). The run ends diverged
    # in that epoch, unrecorded as any run's diverging epoch is, the epoch before kept
    # (torch would step on with NaN, and the loop would record NaN weights' val_loss)
    r = train(moons, model=MLP, loss="cross_entropy", optimizer={"name": "lbfgs", "lr": 300.0, "max_iter": 5},
              train={"epochs": 10}, seed=0)
    assert r.status == "diverged" and r.epochs == 1
    assert all(math.isfinite(h["train_loss"]) and math.isfinite(h["val_loss"]) for h in r.history)
    assert math.isnan(r.summary["test_accuracy"])


def test_lbfgs_first_evaluation_is_the_loops_own(moons, monkeypatch):
    # the step's first closure call returns the loss and gradient the loop computed for
    # the batch: with dropout a second forward pass would draw other masks, and the
    # loss recorded would not be the one the step started from
    from lossbench.engine.optimizers.lbfgs import LBFGS as Opt

    real, started = Opt.step_closure, []
    monkeypatch.setattr(Opt, "step_closure", lambda self, closure: started.append(real(self, closure)) or started[-1])
    r = train(moons, model={"name": "mlp", "hidden": [16], "dropout": 0.5}, loss="cross_entropy",
              optimizer={"name": "lbfgs", "max_iter": 3}, train={"epochs": 3}, seed=0)
    assert r.status == "ok" and started == [h["train_loss"] for h in r.history]
