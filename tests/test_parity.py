"""Torch parity is a contract: every registered loss and optimizer has a case here that
compares it with its PyTorch namesake (loss: value and gradient; optimizer: the parameter
trajectory over many steps), including non-default hyperparameters. A registered item
without a case fails test_every_item_has_a_torch_case unless NO_TORCH says why.

The comparisons skip without torch; the coverage checks run without it. The engine
computes in float32 (its constants and gradient scales are float32 even for float64
input), so the comparisons are float32 with rtol 1e-5.
"""

import inspect

import numpy as np
import pytest

from lossbench.engine import losses, optimizers

from gradcheck import loss_batch

# Registered items with no torch counterpart to compare against: name -> reason.
NO_TORCH = {
    "losses": {
        "binary_hinge": "torch has no binary hinge (scikit-learn's hinge_loss): formula by hand in test_losses.py",
        "quantile": "torch has no pinball loss: formula by hand in test_losses.py",
    },
    # no torch.optim namesake: the recurrence is written by hand in test_optimizers.py
    "optimizers": {"lion": "lucidrains/lion-pytorch's update, in test_optimizers.py::test_lion_is_its_recurrence",
                   "lamb": "cybertronai/pytorch-lamb's update, in test_optimizers.py::test_lamb_is_its_recurrence",
                   "schedule_free_adamw": "facebookresearch/schedule_free's: test_schedule_free_matches_the_reference",
                   "schedule_free_sgd": "facebookresearch/schedule_free's: test_schedule_free_matches_the_reference",
                   # torch.optim.Muon takes only matrices, which the vector cases here are not
                   "muon": "compared with torch.optim.Muon on matrices: test_matrix_optimizers_match_torch"},
}

# ---------------------------------------------------------------- losses

# name -> (torch reference taking lossbench's hyperparameter names, hyperparameter sets)
LOSS_CASES = {
    "mse": (lambda F, p, t: F.mse_loss(p, t), [{}]),
    "mae": (lambda F, p, t: F.l1_loss(p, t), [{}]),
    "huber": (lambda F, p, t, delta=1.0: F.huber_loss(p, t, delta=delta), [{}, {"delta": 0.5}, {"delta": 3.0}]),
    "smooth_l1": (lambda F, p, t, beta=1.0: F.smooth_l1_loss(p, t, beta=beta), [{}, {"beta": 0.3}, {"beta": 0.0}]),
    # No torch builtin: torch's own composition of the formula, differentiated by autograd.
    "log_cosh": (lambda F, p, t: (p - t).cosh().log().mean(), [{}]),
    "cross_entropy": (lambda F, p, t, label_smoothing=0.0: F.cross_entropy(p, t, label_smoothing=label_smoothing),
                      [{}, {"label_smoothing": 0.1}, {"label_smoothing": 1.0}]),
    "bce": (lambda F, p, t: F.binary_cross_entropy_with_logits(p, t), [{}]),
    "hinge": (lambda F, p, t, margin=1.0: F.multi_margin_loss(p, t, margin=margin), [{}, {"margin": 2.0}]),
    "squared_hinge": (lambda F, p, t, margin=1.0: F.multi_margin_loss(p, t, p=2, margin=margin), [{}, {"margin": 0.5}]),
    "focal": (lambda F, p, t, alpha=0.25, gamma=2.0: sigmoid_focal_loss(F, p, t, alpha, gamma),
              [{}, {"alpha": 0.5, "gamma": 1.0}, {"alpha": -1.0, "gamma": 0.5}, {"gamma": 0.0}]),
    # No torch builtin: torch's own composition of the formula, differentiated by autograd.
    "focal_softmax": (lambda F, p, t, gamma=2.0: softmax_focal_loss(F, p, t, gamma),
                      [{}, {"gamma": 0.0}, {"gamma": 0.5}]),
    # lossbench's {0,1} labels are y = 2t - 1 for torch
    "soft_margin": (lambda F, p, t: F.soft_margin_loss(p, 2 * t - 1), [{}]),
    "poisson_nll": (lambda F, p, t, full=False: F.poisson_nll_loss(p, t, full=full), [{}, {"full": True}]),
    # the variance is softplus of the second half of the outputs, in torch as in lossbench;
    # eps 0.5 makes torch's clamp act on some entries (its gradient passes the clamp)
    "gaussian_nll": (lambda F, p, t, full=False, eps=1e-6: F.gaussian_nll_loss(
        p[:, : t.shape[1]], t, F.softplus(p[:, t.shape[1]:]), full=full, eps=eps), [{}, {"full": True, "eps": 0.5}]),
}


def sigmoid_focal_loss(F, inputs, targets, alpha, gamma):
    """torchvision.ops.sigmoid_focal_loss (torchvision/ops/focal_loss.py), reduction 'mean',
    line for line (torchvision is not a dependency)."""
    p = inputs.sigmoid()
    ce_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    return loss.mean()


def softmax_focal_loss(F, logits, target, gamma):
    logp = F.log_softmax(logits, dim=-1).gather(1, target[:, None])[:, 0]
    return (-((1 - logp.exp()) ** gamma) * logp).mean()

LOSS_PARAMS = [(n, kw) for n, (_, kws) in LOSS_CASES.items() for kw in kws]


@pytest.mark.parametrize("name,kw", LOSS_PARAMS, ids=[f"{n}{kw}" for n, kw in LOSS_PARAMS])
@pytest.mark.parametrize("seed", [3, 4])
def test_loss_matches_torch(name, kw, seed):
    torch = pytest.importorskip("torch")
    loss = losses.build(name, **kw)
    pred, target = loss_batch(loss, n=8, c=5, dtype=np.float32, seed=seed)
    tp = torch.tensor(pred, requires_grad=True)
    ref = LOSS_CASES[name][0](torch.nn.functional, tp, torch.tensor(target), **kw)
    ref.backward()
    value, grad = loss.value_and_grad(pred, target)
    assert value == pytest.approx(ref.item(), rel=1e-5, abs=1e-7)
    np.testing.assert_allclose(grad, tp.grad.numpy(), rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------- optimizers

# name -> (torch.optim class, torch arguments that make it lossbench's item); aliases are
# torch classes with other defaults.
TORCH_OPTIM = {
    "sgd": ("SGD", {}),
    "gd": ("SGD", {}),  # full-batch comes from the training loop, not the update
    "momentum": ("SGD", {"momentum": 0.9}),
    "rmsprop": ("RMSprop", {}),
    "adagrad": ("Adagrad", {}),
    "adadelta": ("Adadelta", {}),
    "adam": ("Adam", {}),
    "adamw": ("AdamW", {}),
    "adamax": ("Adamax", {}),
    "nadam": ("NAdam", {}),
    "radam": ("RAdam", {}),
    "rprop": ("Rprop", {}),
    "asgd": ("ASGD", {}),
    "adafactor": ("Adafactor", {}),  # vectors here; matrices in test_matrix_optimizers_match_torch
    "lbfgs": ("LBFGS", {}),  # its steps take a closure: test_lbfgs_matches_torch
}

# name -> hyperparameter sets; {} compares the defaults. Together the sets of an item move
# every hyperparameter it takes off its default (test_every_hyperparameter_is_compared).
OPTIM_CASES = {
    "sgd": [
        {},
        {"lr": 0.1},
        {"lr": 0.05, "momentum": 0.9, "dampening": 0.1, "weight_decay": 0.01},
        {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1},
    ],
    "gd": [{}, {"lr": 0.1, "momentum": 0.5, "dampening": 0.2, "weight_decay": 0.01},
           {"lr": 0.1, "momentum": 0.5, "nesterov": True}],
    "momentum": [{}, {"lr": 0.05}, {"lr": 0.05, "momentum": 0.5, "dampening": 0.3, "weight_decay": 0.01},
                 {"lr": 0.05, "nesterov": True}],
    "rmsprop": [
        {},
        {"lr": 0.005, "alpha": 0.9, "eps": 1e-3},
        {"centered": True, "momentum": 0.5, "weight_decay": 0.1},
        {"centered": True},
        {"momentum": 0.9},
    ],
    "adagrad": [{}, {"lr": 0.1, "lr_decay": 0.01, "initial_accumulator_value": 0.1, "weight_decay": 0.1, "eps": 1e-4}],
    "adadelta": [{}, {"lr": 0.5, "rho": 0.8, "eps": 1e-4, "weight_decay": 0.01}],
    "adam": [
        {},
        {"lr": 0.01},
        {"lr": 0.01, "amsgrad": True, "weight_decay": 0.1, "betas": (0.8, 0.95), "eps": 1e-4},
        {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True},
        {"lr": 0.01, "betas": (0.9, 0.5), "amsgrad": True},
    ],
    "adamw": [{}, {"lr": 0.01}, {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True, "betas": (0.8, 0.9), "eps": 1e-4}],
    "adamax": [{}, {"lr": 0.01, "weight_decay": 0.1, "betas": (0.8, 0.9), "eps": 1e-4}],
    "nadam": [
        {},
        {"weight_decay": 0.1},
        {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True, "betas": (0.8, 0.9), "eps": 1e-4,
         "momentum_decay": 0.01},
    ],
    "radam": [
        {},
        {"lr": 0.01},
        {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True, "betas": (0.8, 0.99), "eps": 1e-4},
    ],
    "rprop": [{}, {"lr": 0.05, "etas": (0.3, 1.5), "step_sizes": (1e-3, 0.2)}],
    "asgd": [{}, {"lr": 0.05, "lambd": 0.01, "alpha": 0.5, "t0": 10, "weight_decay": 0.1}],
    "adafactor": [{}, {"lr": 0.05, "beta2_decay": -0.5, "eps": (1e-20, 1e-2), "d": 2.0, "weight_decay": 0.1}],
    "lbfgs": [{}, {"max_iter": 3}, {"line_search_fn": "strong_wolfe"},
              {"line_search_fn": "strong_wolfe", "max_iter": 4, "history_size": 2, "lr": 0.8},
              {"lr": 0.5, "max_iter": 5, "max_eval": 7, "tolerance_grad": 1e-3, "tolerance_change": 1e-4,
               "history_size": 3}],
}

# an optimizer that steps through a closure (lbfgs) has its own comparison below
OPTIM_PARAMS = [(n, hp) for n, hps in OPTIM_CASES.items() for hp in hps if not optimizers.needs_closure(n)]


def compare_trajectories(torch, name, hp, make_ref, at_x=False):
    """30 steps of lossbench's `name` and of the torch-based reference from `make_ref([tp])`
    on the same gradients (which depend on the parameters, as in training); with at_x,
    every 4th step also compares both optimizers' evaluation points (eval(), then train())."""
    rng = np.random.default_rng(0)
    p0 = rng.normal(size=50).astype(np.float32)
    noise = [rng.normal(size=50).astype(np.float32) for _ in range(30)]
    p = p0.copy()
    opt = optimizers.build(name, [p], **hp)
    tp = torch.tensor(p0.copy(), requires_grad=True)
    ref = make_ref([tp])
    for step, g in enumerate(noise, 1):
        opt.step([g + np.float32(0.1) * p])
        tp.grad = torch.tensor(g) + 0.1 * tp.detach()
        ref.step()
        np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-5, atol=1e-6, err_msg=f"step {step}")
        if at_x and step % 4 == 0:
            opt.eval()
            ref.eval()
            np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-5, atol=1e-6, err_msg=f"step {step} (x)")
            opt.train()
            ref.train()


@pytest.mark.parametrize("name,hp", OPTIM_PARAMS, ids=[f"{n}{hp}" for n, hp in OPTIM_PARAMS])
def test_optimizer_trajectory_matches_torch(name, hp):
    torch = pytest.importorskip("torch")
    tname, tdefaults = TORCH_OPTIM[name]
    compare_trajectories(torch, name, hp, lambda ps: getattr(torch.optim, tname)(ps, **{**tdefaults, **hp}))


def _logistic(seed, dtype):
    """A small L2-regularized logistic regression (convex, well conditioned): (f(w) ->
    (loss, gradient), w0), in `dtype` throughout."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(64, 5)).astype(dtype)
    y = (rng.random(64) < 0.5).astype(dtype)

    def f(w):
        z = x @ w[:5] + w[5]
        r = (1 / (1 + np.exp(-z)) - y) / len(y)
        return float(np.mean(np.logaddexp(0, z) - y * z) + 0.01 * np.dot(w, w)), np.append(x.T @ r, r.sum()) + 0.02 * w
    return f, rng.normal(size=6).astype(dtype)


def _wells(seed, dtype):
    """A nonconvex function: a double well per coordinate, coupled by a small symmetric B."""
    rng = np.random.default_rng(seed)
    b = rng.normal(size=(6, 6)).astype(dtype) * dtype(0.1)
    b = b + b.T

    def f(w):
        return float(0.25 * np.sum((w * w - 1) ** 2) + 0.5 * w @ b @ w), w * (w * w - 1) + b @ w
    return f, (2 * rng.normal(size=6)).astype(dtype)


def compare_lbfgs(torch, make, seed, hp, dtype, rtol, atol):
    """Five step(closure) calls of lossbench's lbfgs and torch.optim.LBFGS from the same
    point, both closures evaluating the same NumPy function: the parameters after each
    step within rtol/atol, and the same counts of closure calls and iterations (torch's
    state func_evals and n_iter)."""
    f, w0 = make(seed, dtype)
    p = w0.copy()
    opt = optimizers.build("lbfgs", [p], **hp)
    tp = torch.tensor(w0.copy(), requires_grad=True)
    ref = torch.optim.LBFGS([tp], **hp)

    def closure():
        loss, grad = f(tp.detach().numpy())
        tp.grad = torch.tensor(grad)
        return torch.tensor(loss, dtype=torch.float64)  # a Python float: as float(closure()) reads it

    for step in range(1, 6):
        first = opt.step_closure(lambda: f(p))
        assert first == pytest.approx(ref.step(closure).item(), rel=rtol), f"step {step}: the loss before it"
        np.testing.assert_allclose(p, tp.detach().numpy(), rtol=rtol, atol=atol, err_msg=f"step {step}")
        ours, theirs = opt.state[0], ref.state[tp]
        assert (ours["func_evals"], ours["n_iter"]) == (theirs["func_evals"], theirs["n_iter"]), f"step {step}"
    return f(w0)[0], f(p)[0]


# float32, as the engine trains: problems and seeds whose five steps stay clear of the
# float32 floor. Where L-BFGS has converged to the last bit, the loss wobbles by an ulp
# and its stopping tests (a loss change < 1e-9, a tie in the line search's Armijo test)
# turn on the last bit of a dot product, which NumPy and torch sum in different orders:
# the two then stop at different iterations (about half the seeds of these problems do
# within five steps). Tolerance rtol 1e-5, atol 1e-6: each iteration's dot products
# round at ~6e-8 in another order than torch's, carried through up to 20 iterations a
# step and the history. Measured: every case within rtol 5e-6 (atol 5e-7), most within
# 1e-7 to 1e-6; a fifth problem (_wells 5, history 2) needed all of 1e-5 and is left out.
LBFGS_PROBLEMS = [(_logistic, 0), (_wells, 3), (_wells, 4)]
LBFGS_PARAMS = [(make, seed, hp) for make, seed in LBFGS_PROBLEMS for hp in OPTIM_CASES["lbfgs"]]


@pytest.mark.parametrize("make,seed,hp", LBFGS_PARAMS,
                         ids=[f"{m.__name__[1:]}{s}-{hp}" for m, s, hp in LBFGS_PARAMS])
def test_lbfgs_matches_torch(make, seed, hp):
    before, after = compare_lbfgs(pytest.importorskip("torch"), make, seed, hp, np.float32, rtol=1e-5, atol=1e-6)
    assert after < before


@pytest.mark.parametrize("make", [_logistic, _wells])
def test_lbfgs_matches_torch_in_float64_on_every_seed(make):
    """The same in float64 (lbfgs computes in its parameters' type, torch in the
    tensor's), where the floor is far below the stopping tolerances: every seed, every
    case, to rtol 1e-7 (79 of the 80 to 1e-9; the last, a nonconvex case with history
    2, amplifies rounding to 2e-8): the float32 test's seed choice is rounding, not a
    difference in the algorithm."""
    torch = pytest.importorskip("torch")
    for seed in range(8):
        for hp in OPTIM_CASES["lbfgs"]:
            compare_lbfgs(torch, make, seed, hp, np.float64, rtol=1e-7, atol=1e-10)


def test_optimizer_defaults_are_torch_defaults():
    torch = pytest.importorskip("torch")
    for name, (tname, tdefaults) in TORCH_OPTIM.items():
        ours = {k: p.default for k, p in optimizers.OPTIMIZERS.schema(name).params.items()}
        theirs = {k: v.default for k, v in inspect.signature(getattr(torch.optim, tname)).parameters.items()}
        theirs.update(tdefaults)
        assert set(ours) <= set(theirs), f"{name}: {sorted(set(ours) - set(theirs))} not in torch.optim.{tname}"
        differ = {k: (v, theirs[k]) for k, v in ours.items() if v != theirs[k]}
        assert not differ, f"{name}: (lossbench, torch) defaults differ: {differ}"


def test_clip_grad_norm_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    for max_norm in (0.1, 1.0, 100.0):
        grads = [rng.normal(size=s).astype(np.float32) for s in ((3, 4), (4,), (7,))]
        tensors = [torch.zeros(g.shape, requires_grad=True) for g in grads]
        for t, g in zip(tensors, grads):
            t.grad = torch.tensor(g)
        ref = torch.nn.utils.clip_grad_norm_(tensors, max_norm)
        assert optimizers.clip_grad_norm(grads, max_norm) == pytest.approx(ref.item(), rel=1e-5)
        for g, t in zip(grads, tensors):
            np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-5, atol=1e-7)


# Optimizers of matrices, on tensors as a model hands them (torch's orientation): name ->
# (torch.optim class, [(shapes, hyperparameter sets, relative tolerance)]). Muon's
# Newton-Schulz runs in bfloat16, emulated: on small matrices every float32 sum has one
# order and the trajectories agree to float32 rounding, except that torch fuses the
# weight update (p + alpha u) where NumPy rounds twice; now and then that flips one
# bfloat16 rounding of a later step: one bfloat16 step of one update, lr * 2^-8 (measured
# 2e-6 of the largest weight), so the bound is 1e-4. On large matrices the GEMMs sum in
# other orders, which bfloat16 rounding and the iteration amplify to ~2e-4 of the
# largest weight after 30 steps (measured), so the bound there is 1e-3.
MUON_HP = {"lr": 0.02, "nesterov": False, "momentum": 0.9, "weight_decay": 0.01, "adjust_lr_fn": "match_rms_adamw",
           "ns_steps": 3, "eps": 1e-5, "ns_coefficients": (3.0, -3.2, 1.2)}
MATRIX_CASES = {
    "muon": ("Muon", [([(6, 4), (4, 9)], {}, 1e-4), ([(6, 4), (4, 9)], MUON_HP, 1e-4),
                      ([(5, 5)], {"adjust_lr_fn": "original", "lr": 0.1}, 1e-4),
                      ([(64, 32), (256, 784)], {"lr": 0.02}, 1e-3)]),
    "adafactor": ("Adafactor", [([(6, 4), (9,), (3, 2, 4, 5)], {}, 1e-6),
                                ([(6, 4), (9,), (3, 2, 4, 5)], OPTIM_CASES["adafactor"][1], 1e-6)]),
}
MATRIX_PARAMS = [(n, i) for n, (_, cases) in MATRIX_CASES.items() for i in range(len(cases))]


@pytest.mark.parametrize("name,i", MATRIX_PARAMS)
def test_matrix_optimizers_match_torch(name, i):
    """30 steps on parameter-dependent gradients; the error bound is relative to the
    largest weight (see MATRIX_CASES)."""
    torch = pytest.importorskip("torch")
    tname, cases = MATRIX_CASES[name]
    shapes, hp, tol = cases[i]
    rng = np.random.default_rng(i)
    ps = [rng.normal(size=s).astype(np.float32) for s in shapes]
    ours = [p.copy() for p in ps]
    opt = optimizers.build(name, ours, **hp)
    tps = [torch.tensor(p, requires_grad=True) for p in ps]
    ref = getattr(torch.optim, tname)(tps, **hp)
    for step in range(1, 31):
        noise = [rng.normal(size=s).astype(np.float32) for s in shapes]
        opt.step([g + np.float32(0.1) * p for g, p in zip(noise, ours)])
        for t, g in zip(tps, noise):
            t.grad = torch.tensor(g) + 0.1 * t.detach()
        ref.step()
        for p, t in zip(ours, tps):
            err = np.abs(p - t.detach().numpy()).max() / np.abs(p).max()
            assert err <= tol, f"{name} {hp} {p.shape}: step {step}, error {err:.2e} of the largest weight"


def test_matrix_optimizer_cases_cover_every_hyperparameter_and_torch_defaults():
    torch = pytest.importorskip("torch")
    for name, (tname, cases) in MATRIX_CASES.items():
        ours = {k: p.default for k, p in optimizers.OPTIMIZERS.schema(name).params.items()}
        ours.pop("fallback", None)  # lossbench's: where a model's other tensors go (torch refuses them)
        theirs = {k: v.default for k, v in inspect.signature(getattr(torch.optim, tname)).parameters.items()}
        assert {k: v for k, v in ours.items() if v != theirs[k]} == {}, f"{name}: defaults differ from torch's"
        untested = [k for k, d in ours.items() if not any(k in hp and hp[k] != d for _, hp, _ in cases)]
        assert not untested, f"{name}: no case sets {untested} off the default"


# ---------------------------------------------------------------- coverage (no torch needed)

REGISTERED = {"losses": losses.LOSSES, "optimizers": optimizers.OPTIMIZERS}
CASES = {"losses": LOSS_CASES, "optimizers": OPTIM_CASES}


@pytest.mark.parametrize("kind", sorted(REGISTERED))
def test_every_item_has_a_torch_case(kind):
    names = set(REGISTERED[kind].names())
    missing = sorted(names - set(CASES[kind]) - set(NO_TORCH[kind]))
    assert not missing, f"{kind} without a torch parity case here (add one, or a reason to NO_TORCH): {missing}"
    stale = sorted((set(CASES[kind]) | set(NO_TORCH[kind])) - names)
    assert not stale, f"parity cases for {kind} that are not registered: {stale}"
    both = sorted(set(CASES[kind]) & set(NO_TORCH[kind]))
    assert not both, f"{kind} both compared and listed in NO_TORCH: {both}"
    assert set(TORCH_OPTIM) == set(OPTIM_CASES), "every optimizer case names its torch.optim class in TORCH_OPTIM"


@pytest.mark.parametrize("kind", sorted(REGISTERED))
def test_every_hyperparameter_is_compared(kind):
    """Each case-having item's cases include {} (its defaults) and, together, move every
    hyperparameter it takes off its default."""
    reg = REGISTERED[kind]
    for name, entry in CASES[kind].items():
        sets = entry[1] if kind == "losses" else entry
        assert {} in sets, f"{kind[:-1]} {name!r}: no case with its defaults"
        untested = [k for k, default in {k: p.default for k, p in reg.schema(name).params.items()}.items()
                    if not any(k in s and s[k] != default for s in sets)]
        assert not untested, f"{kind[:-1]} {name!r}: no torch parity case sets {untested} off the default"


# ---------------------------------------------------------------- Schedule-Free (not torch.optim)

SCHEDULE_FREE = {  # lossbench name -> (schedulefree class, hyperparameter sets)
    "schedule_free_adamw": ("AdamWScheduleFree", [
        {}, {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-4, "weight_decay": 0.1, "warmup_steps": 5, "r": 1.0,
             "weight_lr_power": 1.0}]),
    "schedule_free_sgd": ("SGDScheduleFree", [
        {"lr": 0.1}, {"lr": 0.05, "momentum": 0.8, "weight_decay": 0.1, "warmup_steps": 5, "r": 0.5,
                      "weight_lr_power": 0.0}]),
}
SF_PARAMS = [(n, hp) for n, (_, hps) in SCHEDULE_FREE.items() for hp in hps]


@pytest.mark.parametrize("name,hp", SF_PARAMS, ids=[f"{n}{hp}" for n, hp in SF_PARAMS])
def test_schedule_free_matches_the_reference_package(name, hp):
    """Against facebookresearch/schedule_free as published on PyPI (`schedulefree`, on
    torch), training at y and evaluating at x every few steps, as the training loop does."""
    torch = pytest.importorskip("torch")
    sf = pytest.importorskip("schedulefree")

    def reference(ps):
        ref = getattr(sf, SCHEDULE_FREE[name][0])(ps, **hp, foreach=False)
        ref.train()  # the reference starts in eval mode
        return ref

    compare_trajectories(torch, name, hp, reference, at_x=True)
