"""Stacked runs: K runs trained as one model give each run exactly the numbers it gets alone.

Every row of history and every summary figure is compared for equality (not closeness),
apart from the timing columns, on MLPs and linear models, classification and regression,
with dropout, early stopping, a diverging run, schedules, several losses and every
optimizer in one stack.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from lossbench import data
from lossbench.engine.optimizers import OPTIMIZERS
from lossbench.engine.train import train, train_stack

TIMING = {"elapsed_s"}


def same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def assert_identical(alone, stacked):
    assert stacked.status == alone.status and stacked.epochs == alone.epochs
    assert len(stacked.history) == len(alone.history)
    for ra, rs in zip(alone.history, stacked.history):
        assert ra.keys() == rs.keys()
        for key in ra.keys() - TIMING:
            assert same(ra[key], rs[key]), (key, ra, rs)
    for key in alone.summary:
        assert same(alone.summary[key], stacked.summary[key]), key


@pytest.fixture(scope="module")
def moons():
    return data.load("moons", n_samples=300, seed=0)


@pytest.fixture(scope="module")
def regression():
    return data.load("regression", n_samples=300, seed=0)


@pytest.fixture(scope="module")
def counts():
    return data.load("counts", n_samples=300, seed=0)


@pytest.fixture(scope="module")
def heteroscedastic():
    return data.load("heteroscedastic", n_samples=300, seed=0)


MLP = {"name": "mlp", "hidden": [16, 16]}
CASES = {
    "mlp, three seeds and lrs": ("moons", [
        dict(model=MLP, loss="cross_entropy", optimizer={"name": "sgd", "lr": lr}, seed=s)
        for lr, s in [(0.1, 0), (0.03, 1), (0.01, 2)]]),
    "linear, losses and optimizers differ": ("moons", [
        dict(model="linear", loss="cross_entropy", optimizer="adam", seed=0),
        dict(model="linear", loss="hinge", optimizer={"name": "momentum", "lr": 0.05}, seed=0),
        dict(model="linear", loss="mse", optimizer="rmsprop", seed=3)]),
    "dropout": ("moons", [
        dict(model={**MLP, "dropout": 0.3}, loss="cross_entropy", optimizer="adam", seed=s) for s in range(3)]),
    "regression, losses and a schedule": ("regression", [
        dict(model=MLP, loss=loss, optimizer={"name": "adam", "lr": 0.01}, seed=1,
             train={"epochs": 6, "schedule": {"name": "cosine"}}) for loss in ["mse", "huber", "mae"]]),
    "early stopping and a diverging run": ("moons", [
        dict(model=MLP, loss="cross_entropy", optimizer={"name": "sgd", "lr": 0.05}, seed=0,
             train={"epochs": 30, "early_stopping": {"patience": 2, "min_delta": 0.01}}),
        dict(model=MLP, loss="mse", optimizer={"name": "sgd", "lr": 1e6}, seed=0, train={"epochs": 30}),
        dict(model=MLP, loss="cross_entropy", optimizer="adagrad", seed=4,
             train={"epochs": 30, "schedule": {"name": "reduce_on_plateau", "patience": 1}})]),
    # lbfgs never stacks and refuses clipping (test_train.py::test_lbfgs_*): left out here
    "every optimizer, clipped": ("moons", [
        dict(model=MLP, loss="cross_entropy", optimizer=name, seed=i, train={"clip_grad_norm": 1.0})
        for i, name in enumerate(n for n in OPTIMIZERS.names() if n != "gd" and not OPTIMIZERS.get(n).needs_closure)]),
    "schedule-free, one stopping early": ("moons", [
        dict(model=MLP, loss="cross_entropy", optimizer={"name": "schedule_free_adamw", "lr": lr}, seed=s,
             train={"epochs": 12, "early_stopping": {"patience": 2, "min_delta": 0.02}})
        for lr, s in [(0.01, 0), (0.003, 1), (0.03, 2)]]),
    # two seeds of each loss: runs sharing a loss share one loss call over their rows
    "binary losses on one output": ("moons", [
        dict(model=MLP, loss=loss, optimizer="adam", seed=s) for s in (0, 1) for loss in
        ["focal", {"name": "focal", "alpha": -1.0, "gamma": 0.5}, "soft_margin", "binary_hinge", "bce"]]),
    "counts, poisson and quantiles": ("counts", [
        dict(model=MLP, loss=loss, optimizer={"name": "adam", "lr": 0.01}, seed=s) for s in (2, 3) for loss in
        ["poisson_nll", {"name": "poisson_nll", "full": True}, {"name": "quantile", "quantile": 0.1}]]),
    "gaussian_nll, two outputs per target": ("heteroscedastic", [
        dict(model=MLP, loss=loss, optimizer="adam", seed=s) for s, loss in
        [(0, "gaussian_nll"), (1, "gaussian_nll"), (0, {"name": "gaussian_nll", "eps": 0.5, "full": True})]]),
    "focal_softmax beside cross_entropy": ("moons", [
        dict(model=MLP, loss=loss, optimizer="sgd", seed=0) for loss in
        ["focal_softmax", {"name": "focal_softmax", "gamma": 0.5}, "cross_entropy"]]),
    # one Partitioned optimizer over three rows: Muon's matrices (K, out, in), its
    # fallback's biases, a param group's output layer; a schedule scales every part
    "muon and param groups, three lrs": ("moons", [
        dict(model=MLP, loss="cross_entropy", seed=s, train={"schedule": {"name": "cosine"}},
             optimizer={"name": "muon", "lr": lr, "fallback": {"name": "adamw", "lr": 0.003},
                        "param_groups": [{"params": "output", "name": "adam", "lr": lr / 10}]})
        for lr, s in [(0.02, 0), (0.05, 1), (0.01, 2)]]),
    "adafactor, three lrs, decay on weights only": ("moons", [
        dict(model=MLP, loss="cross_entropy", seed=s,
             optimizer={"name": "adafactor", "lr": lr, "weight_decay": 0.1,
                        "param_groups": [{"params": "biases", "weight_decay": 0.0}]})
        for lr, s in [(0.01, 0), (0.05, 1), (0.002, 2)]]),
    "full batch": ("moons", [
        dict(model=MLP, loss="cross_entropy", optimizer={"name": "gd", "lr": lr}) for lr in (0.5, 0.1)]),
    "unshuffled": ("moons", [
        dict(model=MLP, loss="cross_entropy", optimizer="adam", seed=s, train={"shuffle": False}) for s in (0, 1)]),
}


@pytest.mark.parametrize("case", CASES)
def test_a_stacked_run_is_the_run_alone(case, request):
    name, runs = CASES[case]
    d = request.getfixturevalue(name)
    runs = [{**r, "train": {"epochs": 5, "batch_size": 32, **r.get("train", {})}} for r in runs]
    stacked = train_stack(d, runs)
    alone = [train(d, **r) for r in runs]
    for a, s in zip(alone, stacked):
        assert_identical(a, s)
    statuses = {s.status for s in stacked}
    if case.startswith("early"):  # the case does what it says
        assert statuses == {"ok", "diverged"} and stacked[0].epochs < 30 and stacked[1].epochs < stacked[0].epochs


def test_stacked_runs_must_share_the_model_and_batches(moons):
    with pytest.raises(ValueError, match="stacked runs must share"):
        train_stack(moons, [dict(model=MLP, loss="cross_entropy", optimizer="sgd"),
                            dict(model={**MLP, "hidden": [8]}, loss="cross_entropy", optimizer="sgd")])
    with pytest.raises(ValueError, match="stacked runs must share"):
        train_stack(moons, [dict(model=MLP, loss="cross_entropy", optimizer="sgd"),
                            dict(model=MLP, loss="cross_entropy", optimizer="gd")])
    # the same shapes but another model: refused, never trained as the first run's model
    for other in ({**MLP, "activation": "tanh"}, {**MLP, "dropout": 0.5}):
        with pytest.raises(ValueError, match="stacked runs must share the model"):
            train_stack(moons, [dict(model=MLP, loss="cross_entropy", optimizer="sgd"),
                                dict(model=other, loss="cross_entropy", optimizer="sgd")])
    with pytest.raises(ValueError, match="at least one run"):
        train_stack(moons, [])


def test_a_stacked_runs_time_is_its_share(moons):
    runs = [dict(model=MLP, loss="cross_entropy", optimizer="sgd", seed=s, train={"epochs": 2}) for s in range(4)]
    results = train_stack(moons, runs)
    assert len({r.wall_time_s for r in results}) == 1
    assert all(np.isfinite(r.history[-1]["elapsed_s"]) and r.history[-1]["elapsed_s"] <= r.wall_time_s
               for r in results)


def test_a_run_stops_at_the_first_non_finite_batch_loss_and_its_stack_goes_on(moons):
    runs = [dict(model=MLP, loss="mse", optimizer={"name": "sgd", "lr": lr}, seed=0, train={"epochs": 4})
            for lr in (1e12, 0.05)]
    wild, calm = train_stack(moons, runs)
    assert wild.status == "diverged" and calm.status == "ok" and calm.epochs == 4
    # the epoch in which a batch loss became NaN/inf is not recorded: every row is finite
    assert wild.epochs == len(wild.history) < 4
    assert all(math.isfinite(row["train_loss"]) for row in wild.history)
    assert math.isnan(wild.summary["test_accuracy"]) and calm.summary["test_accuracy"] > 0.5


def test_schedule_free_runs_are_evaluated_at_the_average_not_the_training_point(moons, monkeypatch):
    from lossbench.engine import train as engine

    def runs(opt):
        return [dict(model=MLP, loss="cross_entropy", optimizer={"name": opt, "lr": 0.01}, seed=0,
                     train={"epochs": 3})]

    evaluated = {opt: train_stack(moons, runs(opt))[0] for opt in ("schedule_free_adamw", "adam")}
    monkeypatch.setattr(engine, "_to_evaluation_point", lambda *a: None)  # evaluate where training is
    at_y = {opt: train_stack(moons, runs(opt))[0] for opt in evaluated}
    sf = "schedule_free_adamw"
    assert [r["val_loss"] for r in evaluated[sf].history] != [r["val_loss"] for r in at_y[sf].history]
    assert [r["val_loss"] for r in evaluated["adam"].history] == [r["val_loss"] for r in at_y["adam"].history]


def test_lamb_gets_the_models_tensors_layer_by_layer(moons, monkeypatch):
    from lossbench.engine import optimizers

    made = []
    build = optimizers.build_stacked
    monkeypatch.setattr(optimizers, "build_stacked", lambda *a, **k: made.append(build(*a, **k)) or made[-1])
    train_stack(moons, [dict(model=MLP, loss="cross_entropy", optimizer="lamb", train={"epochs": 1})])
    assert [(t.name, t.shape) for t in made[0].layout] == [
        ("0.Linear.weight", (2, 16)), ("0.Linear.bias", (16,)), ("2.Linear.weight", (16, 16)),
                              ("2.Linear.bias", (16,)), ("4.Linear.weight", (16, 2)), ("4.Linear.bias", (2,))]
