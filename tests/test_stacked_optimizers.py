"""Stacked optimizers: one optimizer over a (K, P) block of rows, each row with its own
hyperparameters, must step every row bit for bit as that row's optimizer alone would,
through the stacked API with K = 1 and through the plain API. Covers every registered
optimizer (a new one without GROUPS fails test_every_optimizer_has_groups)."""

import numpy as np
import pytest

from lossbench.engine import optimizers
from lossbench.errors import ConfigError

# name -> groups of rows; the rows of a group share optimizers.group_key and differ in
# numeric hyperparameters (lr always). Together the groups of an item move every
# hyperparameter it takes off its default (test_every_optimizer_has_groups).
GROUPS = {
    "adafactor": [[{}, {"lr": 0.05, "beta2_decay": -0.5, "d": 2.0}, {"lr": 0.001}],
                  [{"eps": (1e-20, 1e-2), "weight_decay": 0.1},
                   {"lr": 0.03, "eps": (1e-30, 1e-4), "weight_decay": 0.3}]],
    "lamb": [[{}, {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-4}, {"lr": 0.003}],
             [{"weight_decay": 0.1}, {"lr": 0.01, "weight_decay": 0.01}]],
    "schedule_free_adamw": [
        [{}, {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-4, "warmup_steps": 5}, {"lr": 0.001, "r": 1.0,
                                                                                  "weight_lr_power": 1.0}],
        [{"weight_decay": 0.1}, {"lr": 0.01, "weight_decay": 0.01, "warmup_steps": 30}]],
    "schedule_free_sgd": [
        [{}, {"lr": 0.1, "momentum": 0.5, "warmup_steps": 3}, {"lr": 0.5, "r": 2.0, "weight_lr_power": 0.0}],
        [{"weight_decay": 0.1}, {"lr": 0.05, "weight_decay": 0.3}]],
    "lion": [[{}, {"lr": 0.01, "betas": (0.8, 0.9)}, {"lr": 0.001}],
             [{"lr": 0.01, "weight_decay": 0.5}, {"lr": 0.003, "weight_decay": 0.01, "betas": (0.5, 0.999)}]],
    "rprop": [[{}, {"lr": 0.05, "etas": (0.3, 1.5)}, {"lr": 0.001, "step_sizes": (1e-3, 0.02)}]],
    # t0 2: mu leaves 1 at step 3 in that row only (per-row averaging branches)
    "asgd": [[{}, {"lr": 0.05, "lambd": 0.01, "alpha": 0.5, "t0": 2}, {"lr": 0.002, "t0": 1e3}],
             [{"weight_decay": 0.1}, {"lr": 0.03, "weight_decay": 0.01, "lambd": 0.1}]],
    "sgd": [
        [{"lr": 0.1}, {"lr": 0.05}, {"lr": 0.2}],
        [{"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}, {"lr": 0.05, "momentum": 0.5, "dampening": 0.3,
                                                             "weight_decay": 0.1},
         {"lr": 0.02, "momentum": 0.99, "dampening": -0.2, "weight_decay": 1e-3}],
        [{"lr": 0.1, "momentum": 0.9, "nesterov": True}, {"lr": 0.03, "momentum": 0.5, "nesterov": True},
         {"lr": 0.01, "momentum": 0.1, "nesterov": True}],
    ],
    "gd": [[{"lr": 0.1}, {"lr": 0.3, "weight_decay": 0.0}, {"lr": 0.01}],
           [{"lr": 0.1, "momentum": 0.5, "dampening": 0.2, "weight_decay": 0.01},
            {"lr": 0.2, "momentum": 0.8, "weight_decay": 0.1}, {"lr": 0.05, "momentum": 0.3, "weight_decay": 0.5}],
           [{"lr": 0.1, "momentum": 0.5, "nesterov": True}, {"lr": 0.2, "momentum": 0.9, "nesterov": True}]],
    "momentum": [[{"lr": 0.1}, {"lr": 0.05, "momentum": 0.5}, {"lr": 0.01, "momentum": 0.99, "dampening": 0.1}],
                 [{"lr": 0.05, "nesterov": True, "weight_decay": 0.1},
                  {"lr": 0.02, "momentum": 0.7, "nesterov": True, "weight_decay": 0.01},
                  {"lr": 0.1, "nesterov": True, "weight_decay": 1.0}]],
    "rmsprop": [
        [{}, {"lr": 0.005, "alpha": 0.9, "eps": 1e-3}, {"lr": 0.02, "alpha": 0.5}],
        [{"centered": True, "momentum": 0.5, "weight_decay": 0.1},
         {"centered": True, "momentum": 0.9, "weight_decay": 0.01, "alpha": 0.9, "lr": 0.001},
         {"centered": True, "momentum": 0.2, "weight_decay": 1.0, "eps": 1e-4, "lr": 0.03}],
    ],
    "adagrad": [
        [{}, {"lr": 0.1, "lr_decay": 0.01, "initial_accumulator_value": 0.1, "eps": 1e-4},
         {"lr": 0.05, "lr_decay": 0.5}],
        [{"weight_decay": 0.1}, {"lr": 0.2, "weight_decay": 0.01, "initial_accumulator_value": 1.0}],
    ],
    "adadelta": [[{}, {"lr": 0.5, "rho": 0.8, "eps": 1e-4}, {"lr": 2.0, "rho": 0.95}],
                 [{"weight_decay": 0.01}, {"lr": 0.3, "weight_decay": 0.1, "rho": 0.5}]],
    "adam": [
        [{}, {"lr": 0.01}, {"lr": 0.1, "betas": (0.8, 0.95), "eps": 1e-4}, {"lr": 0.003, "betas": (0.5, 0.5)}],
        [{"lr": 0.01, "amsgrad": True, "weight_decay": 0.1, "betas": (0.9, 0.5)},
         {"lr": 0.001, "amsgrad": True, "weight_decay": 0.01}, {"lr": 0.05, "amsgrad": True, "weight_decay": 1.0}],
        [{"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True},
         {"lr": 0.001, "weight_decay": 0.5, "decoupled_weight_decay": True, "betas": (0.8, 0.9)},
         {"lr": 0.1, "weight_decay": 0.01, "decoupled_weight_decay": True, "eps": 1e-3}],
    ],
    "adamw": [
        [{}, {"lr": 0.01, "weight_decay": 0.1}, {"lr": 0.1, "betas": (0.8, 0.9), "eps": 1e-4, "weight_decay": 0.5}],
        [{"lr": 0.01, "amsgrad": True}, {"lr": 0.002, "amsgrad": True, "weight_decay": 0.2, "betas": (0.9, 0.5)}],
    ],
    "adamax": [[{}, {"lr": 0.01, "betas": (0.8, 0.9), "eps": 1e-4}, {"lr": 0.05, "betas": (0.95, 0.5)}],
               [{"weight_decay": 0.1}, {"lr": 0.01, "weight_decay": 0.01}]],
    "nadam": [
        [{}, {"lr": 0.01, "betas": (0.8, 0.9), "eps": 1e-4, "momentum_decay": 0.01},
         {"lr": 0.005, "momentum_decay": 0.1}],
        [{"weight_decay": 0.1}, {"lr": 0.01, "weight_decay": 0.01, "betas": (0.5, 0.9)}],
        [{"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True},
         {"lr": 0.001, "weight_decay": 0.5, "decoupled_weight_decay": True, "momentum_decay": 0.05}],
    ],
    # beta2 0.9: rho_inf 19, rectified from t = 6; 0.999: from t = 6 too but by a
    # different rho_t; 0.5: rho_inf 3, never. A group mixes the two branches row by row.
    "radam": [
        [{"lr": 0.01}, {"lr": 0.02, "betas": (0.9, 0.9)}, {"lr": 0.005, "betas": (0.8, 0.5)},
         {"lr": 0.03, "betas": (0.8, 0.99), "eps": 1e-4}],
        [{"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True},
         {"lr": 0.003, "weight_decay": 0.01, "decoupled_weight_decay": True, "betas": (0.9, 0.6)}],
        [{"weight_decay": 0.1}, {"lr": 0.01, "weight_decay": 0.02, "betas": (0.9, 0.7)}],
    ],
}

# Optimizers that never share a stack (exempt from GROUPS), and why; test_lbfgs_runs_alone
# covers what applies to them: build_stacked over one row, as alone bit for bit.
ALONE = {"lbfgs": "steps through a closure that re-evaluates its run's loss several times a step: one run only"}

CASES = [(n, i) for n, groups in GROUPS.items() for i in range(len(groups))]
IDS = [f"{n}-{i}" for n, i in CASES]
P, STEPS = 23, 24
# a schedule: (step, row, lr) written before that step; lr 0 is a cosine schedule's end
LR_CHANGES = [(6, 1, 0.0123), (10, 0, 0.0), (13, 0, 0.004), (17, 1, 0.0)]


def gradients(rng, k):
    return [rng.normal(size=(k, P)).astype(np.float32) for _ in range(STEPS)]


def stepped(opt, p, noise, row_lr, live_until=None):
    """Step `opt` (over p: (K, P) stacked, or (P,) plain) on gradients that depend on the
    parameters; row_lr(step, row, lr) writes a row's rate, live_until[row] the last step
    a row takes part in (a row mask). Returns p and the state after each step."""
    for t, g in enumerate(noise, 1):
        for step, row, lr in LR_CHANGES:
            if step == t:
                row_lr(row, lr)
        grad = g + np.float32(0.1) * p
        if live_until is None:
            opt.step([grad])
        else:
            opt.step([grad], rows=[t <= last for last in live_until])
    return p, [{k: a.copy() for k, a in s.items()} for s in opt.state]


def alone(name, row, p0, noise, k, stacked, last=STEPS):
    """Row k's run alone: a stacked optimizer over one row, or a plain one over a 1-D array."""
    p = p0[k:k + 1].copy() if stacked else p0[k].copy()
    opt = optimizers.build_stacked(name, p, [row]) if stacked else optimizers.build(name, [p], **row)

    def set_lr(r, lr):
        if r == k:
            if stacked:
                opt.lr[0] = lr
            else:
                opt.lr = lr
    p, state = stepped(opt, p, [g[k:k + 1] if stacked else g[k] for g in noise[:last]], set_lr)
    return p.reshape(-1), [{n: a.reshape(-1) for n, a in s.items()} for s in state]


def set_row_lr(opt):
    def set_lr(row, lr):
        if row < len(opt.lr):
            opt.lr[row] = lr
    return set_lr


@pytest.mark.parametrize("name,i", CASES, ids=IDS)
def test_a_row_of_a_group_steps_as_it_does_alone(name, i):
    rows = GROUPS[name][i]
    rng = np.random.default_rng(i)
    p0 = rng.normal(size=(len(rows), P)).astype(np.float32)
    noise = gradients(rng, len(rows))
    p = p0.copy()
    opt = optimizers.build_stacked(name, p, rows)
    p, state = stepped(opt, p, noise, set_row_lr(opt))
    for k, row in enumerate(rows):
        for stacked in (True, False):
            pk, sk = alone(name, row, p0, noise, k, stacked)
            assert np.array_equal(p[k], pk), f"row {k} ({row}) differs from it alone (stacked={stacked})"
            for key, a in state[0].items():
                assert np.array_equal(a[k], sk[0][key]), f"row {k}: state {key!r} differs (stacked={stacked})"
    assert np.all(np.isfinite(p)) and not np.array_equal(p, p0)


@pytest.mark.parametrize("name,i", CASES, ids=IDS)
def test_rows_left_out_keep_their_bits(name, i):
    """A run that stops (diverged, early stopping) is left out by the row mask: it ends
    where its run alone ends after its last step, and the others go on as alone."""
    rows = GROUPS[name][i]
    last = [STEPS, 9, STEPS, 15][:len(rows)]  # row 1 stops first; a middle row splits the block
    if len(rows) == 2:
        last = [12, STEPS]
    rng = np.random.default_rng(10 + i)
    p0 = rng.normal(size=(len(rows), P)).astype(np.float32)
    noise = gradients(rng, len(rows))
    p = p0.copy()
    opt = optimizers.build_stacked(name, p, rows)
    p, state = stepped(opt, p, noise, set_row_lr(opt), live_until=last)
    assert opt.t == STEPS
    for k, row in enumerate(rows):
        pk, sk = alone(name, row, p0, noise, k, True, last=last[k])
        assert np.array_equal(p[k], pk), f"row {k} (stopped after step {last[k]}) differs from it alone"
        for key, a in state[0].items():
            assert np.array_equal(a[k], sk[0][key]), f"row {k}: state {key!r} differs"


# optimizers of matrices only: the rows here are vectors; test_groups.py stacks their runs
MATRICES_ONLY = {"muon"}


def test_every_optimizer_has_groups():
    assert sorted(GROUPS | ALONE) == sorted(set(optimizers.OPTIMIZERS.names()) - MATRICES_ONLY)
    assert not set(GROUPS) & set(ALONE)
    for name, groups in GROUPS.items():
        for rows in groups:
            lrs = {optimizers.OPTIMIZERS.check(name, r)["lr"] for r in rows}
            assert len(rows) >= 2 and len(lrs) == len(rows), f"{name}: the rows' lr must differ"
            assert len({optimizers.group_key(name, r) for r in rows}) == 1, f"{name}: {rows} are not one group"
        defaults = {k: p.default for k, p in optimizers.OPTIMIZERS.schema(name).params.items()}
        untested = [k for k, d in defaults.items() if not any(r.get(k, d) != d for rows in groups for r in rows)]
        assert not untested, f"{name}: no group sets {untested} off the default"


@pytest.mark.parametrize("name,a,b", [
    ("sgd", {}, {"momentum": 0.9}),
    ("sgd", {"momentum": 0.9}, {"momentum": 0.9, "nesterov": True}),
    ("sgd", {}, {"weight_decay": 0.1}),
    ("momentum", {}, {"momentum": 0.0}),
    ("rmsprop", {}, {"centered": True}),
    ("rmsprop", {}, {"momentum": 0.5}),
    ("adagrad", {}, {"weight_decay": 0.01}),
    ("adam", {}, {"amsgrad": True}),
    ("adam", {"weight_decay": 0.1}, {"weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("adamw", {}, {"weight_decay": 0.0}),
    ("nadam", {"weight_decay": 0.1}, {"weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("lbfgs", {}, {"line_search_fn": "strong_wolfe"}),
])
def test_group_key_separates_code_paths(name, a, b):
    assert optimizers.group_key(name, a) != optimizers.group_key(name, b)
    with pytest.raises(ValueError, match="group them by optimizers.group_key"):
        optimizers.build_stacked(name, np.zeros((2, 3), np.float32), [a, b])


LBFGS_ROWS = [{}, {"lr": 0.5, "max_iter": 4, "max_eval": 6, "tolerance_grad": 1e-4, "tolerance_change": 1e-6,
                  "history_size": 3}, {"line_search_fn": "strong_wolfe", "max_iter": 5, "history_size": 2}]


@pytest.mark.parametrize("row", LBFGS_ROWS)
def test_lbfgs_runs_alone(row):
    """build_stacked over one (1, P) row (as the training loop builds it) steps bit for bit
    as the plain optimizer over a flat array, a schedule's lr writes included; K = 2 and
    the plain `step` are refused."""
    a = np.linspace(0.1, 3.0, P).astype(np.float32)  # f(p) = sum(a p^2 / 2 + cos p)

    def closure(p):
        return lambda: (float(np.sum(a * p * p / 2 + np.cos(p))), (a * p - np.sin(p)).reshape(p.shape))

    p0 = np.random.default_rng(0).normal(size=P).astype(np.float32)
    flat, block = p0.copy(), p0[None].copy()
    plain, stacked = optimizers.build("lbfgs", [flat], **row), optimizers.build_stacked("lbfgs", block, [row])
    assert stacked.lr.shape == (1, 1) and type(plain.lr) is float
    for step in range(4):
        if step == 2:
            plain.lr, stacked.lr[0] = 0.3, 0.3
        assert plain.step_closure(closure(flat)) == stacked.step_closure(closure(block))
        assert np.array_equal(flat, block[0]), f"step {step}"
    assert plain.state[0]["func_evals"] == stacked.state[0]["func_evals"] > 4
    assert float(closure(flat)()[0]) < float(closure(p0)()[0])
    with pytest.raises(ValueError, match="lbfgs runs alone"):
        optimizers.build_stacked("lbfgs", np.zeros((2, P), np.float32), [row, row])
    with pytest.raises(TypeError, match=r"lbfgs needs a closure: call step_closure"):
        plain.step([np.zeros(P, np.float32)])


def test_group_key_joins_what_differs_only_in_numbers():
    assert optimizers.group_key("momentum", {}) == optimizers.group_key("momentum", {"momentum": 0.5, "lr": 0.3})
    assert optimizers.group_key("adam", {"betas": [0.5, 0.6], "eps": 1e-3}) == optimizers.group_key("adam", {})
    # an alias is its own group: build_stacked fills every row's defaults from one name
    assert optimizers.group_key("momentum", {}) != optimizers.group_key("sgd", {"momentum": 0.9})
    assert optimizers.group_key("adam", {"weight_decay": 0.01, "decoupled_weight_decay": True}) != \
        optimizers.group_key("adamw", {})


def test_rows_are_checked_as_alone():
    block = np.zeros((2, 3), np.float32)
    with pytest.raises(ConfigError, match=r"^optimizer\.lr: must be a number > 0, got -1$"):
        optimizers.build_stacked("adam", block, [{}, {"lr": -1}])
    with pytest.raises(ConfigError, match=r"^optimizer\.nesterov: needs momentum > 0 and dampening = 0"):
        optimizers.build_stacked("momentum", block, [{"nesterov": True}, {"nesterov": True, "dampening": 0.1}])
    with pytest.raises(ValueError, match=r"\(K, P\) parameter array and K >= 1"):
        optimizers.build_stacked("adam", block, [{}])


def test_lr_is_a_float_alone_and_a_column_of_rows_stacked():
    plain = optimizers.build("adam", [np.zeros(3, np.float32)], lr=0.5)
    assert type(plain.lr) is float and plain.lr == 0.5
    plain.lr = 0.25
    assert plain.lr == 0.25
    opt = optimizers.build_stacked("adam", np.zeros((3, 4), np.float32), [{"lr": 0.1}, {}, {"lr": 0.3}])
    assert opt.lr.shape == (3, 1) and opt.lr.dtype == np.float64
    opt.lr[1] = 0.7
    np.testing.assert_array_equal(opt.lr[:, 0], [0.1, 0.7, 0.3])
    assert opt.copies() == plain.copies() == 5
    with pytest.raises(ValueError, match="one bool per row"):
        opt.step([np.zeros((3, 4), np.float32)], rows=[True, False])
    with pytest.raises(ValueError, match="one bool per row"):
        plain.step([np.zeros(3, np.float32)], rows=[True])


@pytest.mark.parametrize("name", ["schedule_free_adamw", "schedule_free_sgd"])
def test_schedule_free_moves_only_the_rows_asked_to_the_evaluation_point(name):
    rows = GROUPS[name][0][:2]
    rng = np.random.default_rng(0)
    p = rng.normal(size=(2, P)).astype(np.float32)
    opt = optimizers.build_stacked(name, p, rows)
    for g in gradients(rng, 2)[:5]:
        opt.step([g])
    y = p.copy()
    opt.eval(rows=[True, False])  # row 0 to x, row 1 stays at y
    assert not np.array_equal(p[0], y[0]) and np.array_equal(p[1], y[1])
    x0 = p[0].copy()
    opt.eval(rows=[False, True])
    assert np.array_equal(p[0], x0) and not np.array_equal(p[1], y[1])
    alone = optimizers.build_stacked(name, y[1:].copy(), rows[1:])  # row 1 alone reaches the same x
    alone.state[0]["z"][...] = opt.state[0]["z"][1]
    alone.t = opt.t
    alone.eval()
    assert np.array_equal(alone.params[0][0], p[1])
