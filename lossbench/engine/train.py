"""One training run: batches, steps, per-epoch evaluation, early stopping, divergence.

`train(dataset, model=..., loss=..., optimizer=..., train=..., seed=...)` returns a
RunResult. The same arguments give the same numbers: the seed alone decides the
initial weights, the batch order and the dropout masks.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lossbench.engine import losses, nn, optimizers, schedules
from lossbench.engine.functions import FunctionLoss, Point
from lossbench.engine.metrics import HIGHER_IS_BETTER, TASK_METRICS
from lossbench.registry import AnyOf, Bool, Choice, Int, Named, Nested, Optional, Real, Schema, Text, fail, split_named


class EarlyStopping:
    """Stop when the monitored validation metric has not improved by more than min_delta
    for `patience` epochs in a row (Keras' EarlyStopping, without restoring weights)."""

    def __init__(self, metrics: tuple[str, ...], monitor: str = "val_loss", patience: int = 5, min_delta: float = 0.0):
        allowed = [f"val_{m}" for m in metrics]
        if monitor not in allowed:
            raise fail("train.early_stopping.monitor", f"must be one of {allowed}", monitor, allowed)
        self.key, self.patience, self.min_delta = monitor, patience, float(min_delta)
        self.sign = 1.0 if HIGHER_IS_BETTER[monitor.removeprefix("val_")] else -1.0
        self.best, self.bad = -math.inf, 0

    def should_stop(self, row: dict) -> bool:
        v = self.sign * row[self.key]
        if v > self.best + self.min_delta:
            self.best, self.bad = v, 0
        else:
            self.bad += 1
        return self.bad >= self.patience


EARLY_STOPPING = Schema.of(EarlyStopping, context=("metrics",), owner="train.early_stopping",
                           monitor=Text(), patience=Int(ge=1), min_delta=Real(ge=0))


@dataclass
class TrainConfig:
    """A config's `train` section; `TrainConfig.of(options)` checks it against TRAIN."""

    epochs: int = 10
    batch_size: int | str = 128  # "full": the whole training set each step
    shuffle: bool = True
    schedule: str | dict | None = None  # {name: cosine, ...}; stepped once per epoch
    clip_grad_norm: float | None = None
    early_stopping: dict | None = None  # {monitor: val_loss, patience: 5, min_delta: 0.0}
    save_params: bool | str = False  # true: initial and final parameters (RunResult.params); "every_epoch" too

    @classmethod
    def of(cls, options: dict) -> TrainConfig:
        return cls(**TRAIN.check(options, "train"))

    @property
    def watches_validation(self) -> bool:
        """Early stopping and reduce_on_plateau need a validation split."""
        plateau = self.schedule is not None and \
            split_named("train.schedule", self.schedule, "schedule")[0] == "reduce_on_plateau"
        return self.early_stopping is not None or plateau


# optimizers that take the whole training set as each step's batch, whatever batch_size says
FULL_BATCH = ("gd", "lbfgs")


def full_batch(cfg: TrainConfig, opt_name: str) -> bool:
    """Each step sees the whole training set: batch_size "full", or a full-batch optimizer."""
    return cfg.batch_size == "full" or opt_name in FULL_BATCH


def check_clipping(cfg: TrainConfig, opt_name: str) -> None:
    """Refuse gradient clipping for an optimizer that steps through a closure (lbfgs)."""
    if cfg.clip_grad_norm is not None and optimizers.needs_closure(opt_name):
        raise fail("train.clip_grad_norm", f"must be null with {opt_name} (its line search and curvature pairs need "
                                           "the true gradient)", cfg.clip_grad_norm)


TRAIN = Schema.of(TrainConfig, owner="train", epochs=Int(ge=1), batch_size=AnyOf(Int(ge=1), Choice("full")),
                  shuffle=Bool(), schedule=Optional(Named(schedules.SCHEDULES)), clip_grad_norm=Optional(Real(gt=0)),
                  early_stopping=Optional(Nested(EARLY_STOPPING, "a mapping {monitor, patience, min_delta}")),
                  save_params=AnyOf(Bool(), Choice("every_epoch")))


@dataclass
class RunResult:
    status: str  # "ok" or "diverged"
    epochs: int  # epochs completed
    history: list[dict] = field(default_factory=list)
    summary: dict[str, float] = field(default_factory=dict)  # final/best/test figures
    wall_time_s: float = 0.0
    n_params: int = 0
    # train.save_params: "initial", "final" (and "epoch_001", ...) -> flat float32 parameters
    params: dict[str, np.ndarray] = field(default_factory=dict)
    paused: bool = False  # stopped by `stop_after` while still training: it may go on later



def model_outputs(loss: losses.Loss, loss_name: str, task: str, n_outputs: int, dataset: str) -> int:
    """How many outputs the model needs for `loss` on a dataset of this task and size.

    Index losses take class indices; binary losses (bce, focal, soft_margin, binary_hinge)
    take {0,1}: one logit for two classes, one per class (one-vs-rest) otherwise;
    regression losses take real values (one-hot on a classification dataset), with
    `outputs_per_target` outputs per target column (gaussian_nll: a mean and a variance).
    A classification loss on regression data is a ConfigError.
    """
    if task != "classification":
        if loss.target != "real":
            real = sorted(n for n in losses.LOSSES.names() if losses.LOSSES.get(n).target == "real")
            raise fail("loss.name", f"must be a regression loss on the regression dataset {dataset!r} "
                                    f"(one of {real})", loss_name)
        return n_outputs * loss.outputs_per_target
    if loss.target == "real":
        return n_outputs * loss.outputs_per_target
    return 1 if loss.target == "binary" and n_outputs == 2 else n_outputs


def check_targets(loss: losses.Loss, loss_name: str, data) -> None:
    """Refuse a loss on targets it has no minimum for (poisson_nll on negative values)."""
    if loss.nonnegative_targets and data.task != "classification" and len(data.y_train) \
            and float(np.min(data.y_train)) < 0:
        raise fail("loss.name", f"needs targets >= 0 (counts or rates), and {data.name!r} has targets down to "
                                f"{float(np.min(data.y_train)):.4g}", loss_name)


def encode_targets(loss: losses.Loss, loss_name: str, data) -> tuple[int, Callable[[np.ndarray], np.ndarray]]:
    """(model outputs, how the dataset's labels become the loss's targets)."""
    n_out = model_outputs(loss, loss_name, data.task, data.n_outputs, data.name)
    if data.task != "classification" or loss.target == "index":
        return n_out, lambda y: y
    if n_out == 1:  # a binary loss on two classes: one logit
        return 1, lambda y: y.astype(np.float32)[:, None]
    eye = np.eye(data.n_outputs, dtype=np.float32)
    return n_out, lambda y: eye[y]


def _metrics(loss, out, t, y, task) -> dict[str, float]:
    """Loss and task metrics of one run's outputs on a split."""
    res = {"loss": loss.value(out, t)}
    out = loss.predict(out)  # in the target's units (poisson_nll: the rate; gaussian_nll: the mean)
    if task == "function":  # every row is the point
        res["distance"] = loss.function.distance(out[0])
    elif task == "classification":
        pred = (out[:, 0] > 0).astype(np.int64) if out.shape[1] == 1 else out.argmax(axis=1)
        res["accuracy"] = float(np.mean(pred == y))
    else:
        err = out - y
        res["mae"] = float(np.mean(np.abs(err)))
        ss_tot = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
        ss_res = (err.astype(np.float64) ** 2).sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            res["r2"] = float(np.mean(1.0 - ss_res / ss_tot))  # uniform average over outputs
    return res


def _evaluate(net, runs: list[_Run], live: list[int], x, split: int, y, task) -> dict[int, dict[str, float]]:
    """Metrics of the runs `live` on one split (1 val, 2 test): one stacked forward pass."""
    if len(x) == 0 or not live:
        return {k: {m: math.nan for m in TASK_METRICS[task]} for k in live}
    out = net.predict(x)
    return {k: _metrics(runs[k].loss, out[k], runs[k].targets[split], y, task) for k in live}


def train(data, **kwargs) -> RunResult:
    """Train one model on `data` (a lossbench.data.Dataset) and evaluate it.

    Keyword arguments: model, loss, optimizer (a name or {name: ..., **hyperparams}),
    train (TrainConfig fields), seed, on_epoch, stop_after. `on_epoch(row)` is called
    after every epoch with the history row, for progress displays; library code never
    prints. `stop_after=N` pauses a run still training after epoch N (RunResult.paused):
    its first N epochs are those of the whole run, schedule included.
    """
    return train_stack(data, [kwargs])[0]


def train_stack(data, runs: list[dict]) -> list[RunResult]:
    """Train K runs on `data` as one stacked model; each run is `train`'s keyword arguments.

    The runs must share the model (architecture and its options, not its seed), the batch
    size, epochs and shuffling; everything else may differ (seed, loss, optimizer,
    schedule, early stopping). Each run's numbers are exactly those it gets alone: its own
    initial weights, batch order and dropout masks, one GEMM per run, its own loss and
    optimizer over its row of the parameters. A run that diverges or stops early stops
    recording there; the others go on. Times are each run's share of the stack's time.
    """
    # Overflow on the way to a NaN loss is expected: it is reported as "diverged".
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _train(data, runs)


@dataclass
class _Run:
    """Everything one run trains with, built from its config and seed."""

    cfg: TrainConfig
    loss: losses.Loss
    targets: tuple  # train, val, test targets encoded for the loss
    net: nn.Sequential  # alone; the stack trains its row
    opt_spec: tuple[str, dict]
    sched: schedules.Schedule | None
    stopper: EarlyStopping | None
    full_batch: bool
    order_rng: np.random.Generator
    on_epoch: Callable[[dict], Any] | None = None
    loss_key: str = ""  # runs with equal keys share one loss call per batch (and their targets)
    model_key: str = ""  # the model's name and options: runs of one stack share them
    opt: optimizers.Optimizer | None = None  # its group's optimizer (stacked runs share one)
    row: int = 0  # the run's row in that optimizer
    status: str = "ok"
    live: bool = True  # still training: neither diverged nor stopped early
    history: list[dict] = field(default_factory=list)
    prev_val: float | None = None
    saved: dict[str, np.ndarray] = field(default_factory=dict)  # train.save_params: name -> parameters
    stop_after: int | None = None  # pause after this epoch (successive halving's rung), schedule unchanged
    paused: bool = False


def _setup(data, model=None, loss=None, optimizer="sgd", train=None, seed=0, on_epoch=None, stop_after=None) -> _Run:
    cfg = train if isinstance(train, TrainConfig) else TrainConfig.of(train or {})
    init_seed, order_seed = (int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(2))
    if data.task == "function":  # the parameters are the point, the loss is the function
        loss_name, loss_kw, model_name, model_kw = POINT_LOSS, {}, POINT_MODEL, {}
        loss_fn, net = point_problem(data.function, init_seed)
        targets = (data.y_train, data.y_val, data.y_test)
    else:
        loss_name, loss_kw = split_named("loss", loss, "loss")
        loss_fn = losses.build(loss_name, **loss_kw)
        check_targets(loss_fn, loss_name, data)
        n_out, encode = encode_targets(loss_fn, loss_name, data)
        targets = (encode(data.y_train), encode(data.y_val), encode(data.y_test))
        model_name, model_kw = split_named("model", model, "model")
        net = nn.build(model_name, data.n_features, n_out, init_seed, data.image_shape, **model_kw)
    opt_name, opt_kw = split_named("optimizer", optimizer, "optimizer")
    # the optimizer and its schedule are made over the run's row of the stack (_stack);
    # checked now, and the schedule's base lr (a stand-in: one over the model's buffer
    # allocated its state, up to 6 model-sized arrays, for nothing)
    opt = optimizers.check(opt_name, opt_kw)
    sched = None
    if cfg.schedule is not None:
        s_name, s_kw = split_named("train.schedule", cfg.schedule, "schedule")
        sched = schedules.build(s_name, opt.lr, cfg.epochs, **s_kw)
    if len(data.x_val) == 0 and cfg.watches_validation:
        raise fail("dataset.val_fraction", "must be > 0 when train.early_stopping or reduce_on_plateau watch "
                                           "the validation split", 0)
    metrics = TASK_METRICS[data.task]
    stopper = EarlyStopping(metrics, **cfg.early_stopping) if cfg.early_stopping else None
    check_clipping(cfg, opt_name)
    full = full_batch(cfg, opt_name)
    return _Run(cfg, loss_fn, targets, net, (opt_name, opt_kw), sched, stopper, full,
                np.random.default_rng(order_seed), on_epoch, json.dumps([loss_name, loss_kw], sort_keys=True),
                json.dumps([model_name, model_kw], sort_keys=True, default=str), stop_after=stop_after)


POINT_MODEL, POINT_LOSS = "point", "function"  # what a test function's config says for model and loss


def point_problem(function, seed: int) -> tuple[losses.Loss, nn.Sequential]:
    """(the loss, the model) of a test function: its value at the model's one output row,
    the point, which starts at the function's start; gradient noise from the seed."""
    rng = np.random.default_rng(seed)
    net = nn.Sequential([Point(function.dims, function.start, function.noise, rng)], rng).allocate()
    return FunctionLoss(function), net


def _stack(data, runs: list[_Run]):
    """(the runs' models as one stacked model, its optimizer groups): one optimizer for each
    run of consecutive runs with one optimizer key, over their rows."""
    def shared(r: _Run) -> tuple:
        return r.model_key, r.net.params.shape, r.full_batch, r.cfg.batch_size, r.cfg.epochs, r.cfg.shuffle

    if any(shared(r) != shared(runs[0]) for r in runs[1:]):
        raise ValueError("stacked runs must share the model (its options and its number of outputs, which the "
                         "loss decides), batch size, epochs and shuffling")
    alone = [r.opt_spec[0] for r in runs if optimizers.needs_closure(r.opt_spec[0])]
    if alone and len(runs) > 1:
        raise ValueError(f"{alone[0]} runs alone (its steps re-evaluate its own loss): train it in a stack of one, "
                         f"not with {len(runs) - 1} other runs")
    net = nn.Sequential.stack([r.net for r in runs])
    groups = []  # (optimizer, first row, end row): consecutive runs with one optimizer key
    keys = [optimizers.group_key(*r.opt_spec) for r in runs]
    lo = 0
    while lo < len(runs):
        hi = next((i for i in range(lo + 1, len(runs)) if keys[i] != keys[lo]), len(runs))
        opt = optimizers.build_for_model(runs[lo].opt_spec[0], net.params[lo:hi], [r.opt_spec[1] for r in runs[lo:hi]],
                                         runs[lo].net.layout)
        for k in range(lo, hi):
            runs[k].opt, runs[k].row = opt, k - lo
        groups.append((opt, lo, hi))
        lo = hi
    return net, groups


def _train(data, specs: list[dict]) -> list[RunResult]:
    if not specs:
        raise ValueError("train_stack needs at least one run")
    # runs sharing an optimizer's settings sit next to each other: one optimizer per group
    # (a run's row in the stack changes nothing in its numbers)
    order = sorted(range(len(specs)), key=lambda i: _opt_key(specs[i]))
    results = _train_ordered(data, [specs[i] for i in order])
    return [results[order.index(i)] for i in range(len(specs))]


def _opt_key(spec: dict) -> str:
    name, kw = split_named("optimizer", spec["optimizer"], "optimizer")
    return json.dumps(optimizers.group_key(name, kw), default=str)


def _train_ordered(data, specs: list[dict]) -> list[RunResult]:
    runs = [_setup(data, **spec) for spec in specs]
    for r in runs:  # a loss shares the targets of the first run with the same loss
        r.targets = next(o for o in runs if o.loss_key == r.loss_key).targets
    for r in runs:
        if r.cfg.save_params:
            r.saved["initial"] = r.net.params.copy()
    net, groups = _stack(data, runs)
    n, k_runs, cfg = len(data.x_train), len(runs), runs[0].cfg
    bs = n if runs[0].full_batch else min(cfg.batch_size, n)
    # One reused batch buffer: a fresh ~400 kB array per step costs page faults once
    # glibc hands such sizes to mmap, which made whole epochs up to 2x slower.
    xbuf = np.empty((k_runs, bs, data.x_train.shape[1]), np.float32) if not runs[0].full_batch else None
    start, step = time.perf_counter(), 0
    for epoch in range(1, cfg.epochs + 1):
        live = [k for k, r in enumerate(runs) if r.live]
        if not live:
            break
        for k in live:
            if runs[k].sched is not None:
                runs[k].opt.lr[runs[k].row] = runs[k].sched(epoch - 1, runs[k].prev_val)
        sums = _fit_epoch(net, groups, runs, live, data.x_train, bs, xbuf)
        step += sums[2]
        evaluated = [k for k in live if runs[k].live]
        with _evaluation_point(groups, evaluated):
            val = _evaluate(net, runs, evaluated, data.x_val, 1, data.y_val, data.task)
            for k in evaluated:  # at the point the epoch's figures are measured at
                if runs[k].cfg.save_params == "every_epoch":
                    runs[k].saved[f"epoch_{epoch:03d}"] = net.params[k].copy()
        elapsed = (time.perf_counter() - start) / k_runs  # each run's share of the stack's time
        for k, v in val.items():
            _end_epoch(runs[k], epoch, step, sums[0][k] / n, sums[1][k] / max(sums[2], 1), v, elapsed,
                       len(data.x_val) > 0, _point(data, net.params[k]))
    ok = [k for k, r in enumerate(runs) if r.status == "ok" and not r.paused]  # a paused run is not tested yet
    _to_evaluation_point(groups, ok, "eval")  # and the runs' models keep it, as the reference's checkpoints
    test = _evaluate(net, runs, ok, data.x_test, 2, data.y_test, data.task)
    wall = (time.perf_counter() - start) / k_runs
    for k, r in enumerate(runs):  # each run's own model ends with its trained weights
        r.net.params[...] = net.params[k]
        if r.cfg.save_params:
            r.saved["final"] = r.net.params.copy()
    return [_result(r, data.task, test.get(k), wall) for k, r in enumerate(runs)]


@contextlib.contextmanager
def _evaluation_point(groups, rows: list[int]):
    """Evaluate the runs `rows` where their optimizers evaluate (Schedule-Free: the average
    x, not the training point y), then move them back."""
    _to_evaluation_point(groups, rows, "eval")
    try:
        yield
    finally:
        _to_evaluation_point(groups, rows, "train")


def _to_evaluation_point(groups, rows: list[int], mode: str) -> None:
    for opt, lo, hi in groups:
        mask = [k in rows for k in range(lo, hi)]
        if hasattr(opt, mode) and any(mask):  # only optimizers with two points have eval/train
            getattr(opt, mode)(rows=mask)


PATH_DIMS = 10  # a test function's history records its point up to this many coordinates


def _point(data, params: np.ndarray) -> dict[str, float]:
    """A test function's point (its training point) as history columns x0, x1, ...: the path."""
    if data.task != "function" or len(params) > PATH_DIMS:
        return {}
    return {f"x{i}": float(v) for i, v in enumerate(params)}


def _end_epoch(run: _Run, epoch, step, train_loss, grad_norm, val, elapsed, has_val, point=()) -> None:
    """Record one epoch of a run that is still training; decide whether it goes on.
    `point`: a test function's coordinates after the epoch (x0, x1, ...), its path."""
    row = {"epoch": epoch, "step": step, "train_loss": train_loss}
    row.update({f"val_{k}": v for k, v in val.items()})
    row.update(lr=float(run.opt.lr[run.row, 0]), grad_norm=grad_norm, elapsed_s=elapsed)
    row.update(point)
    run.history.append(row)
    if run.on_epoch is not None:
        run.on_epoch(row)
    run.prev_val = val["loss"]
    if not (math.isfinite(train_loss) and (not has_val or math.isfinite(run.prev_val))):
        run.status, run.live = "diverged", False
    elif run.stopper is not None and run.stopper.should_stop(row):
        run.live = False
    elif run.stop_after is not None and epoch >= run.stop_after and epoch < run.cfg.epochs:
        run.live, run.paused = False, True  # its numbers so far are those of the whole run's first epochs


def _fit_epoch(net, groups, runs: list[_Run], live: list[int], x: np.ndarray, bs: int, xbuf):
    """One pass over the training set for the runs `live`: ({run: loss sum}, {run: grad-norm
    sum}, steps). A run whose batch loss is not finite is marked diverged and stops at once."""
    loss_sum, norm_sum = dict.fromkeys(live, 0.0), dict.fromkeys(live, 0.0)
    steps = 0
    for lo, hi, idx in _batches(runs, len(x), bs):
        values_of, norms = _step(net, groups, runs, x, (lo, hi, idx), xbuf)
        for k, value in values_of.items():
            loss_sum[k] += value * (hi - lo)  # weight the short last batch by its size
        for k, norm in norms.items():
            norm_sum[k] += norm
        steps += 1
    return loss_sum, norm_sum, steps


def _shuffled(runs: list[_Run]) -> bool:
    return runs[0].cfg.shuffle and not runs[0].full_batch


def _batches(runs: list[_Run], n: int, bs: int):
    """One epoch's batches, (lo, hi, (K, hi - lo) row indices): each live run's own
    permutation of the n training rows when shuffling (drawn as the epoch starts)."""
    shuffled = _shuffled(runs)
    orders = np.stack([r.order_rng.permutation(n) if shuffled and r.live else np.arange(n) for r in runs])
    for lo in range(0, n, bs):
        hi = min(lo + bs, n)
        yield lo, hi, orders[:, lo:hi]


def _step(net, groups, runs: list[_Run], x: np.ndarray, batch: tuple, xbuf) -> tuple[dict, dict]:
    """One minibatch step of the live runs on `batch` (from _batches): ({run: batch loss} for
    the runs live before it, {run: gradient norm} for those still live after the loss).
    A run whose batch loss is not finite is marked diverged and is not stepped."""
    lo, hi, idx = batch
    if _shuffled(runs):
        xb = np.take(x, idx, axis=0, out=xbuf[:, : hi - lo])
    else:  # every run sees the same rows: no copy
        xb = np.broadcast_to(x[lo:hi], (len(runs), hi - lo, x.shape[1]))
    out = net.forward(xb, train=True)
    grad = np.zeros_like(out)
    values_of, norms = {}, {}
    for rows in _loss_groups(runs):
        # one call for the runs sharing a loss: their rows of the outputs and targets
        values, grad[rows] = runs[rows[0]].loss.value_and_grad(out[rows], runs[rows[0]].targets[0][idx[rows]])
        for k, value in zip(rows, values.tolist()):  # Python floats: sums in float64
            values_of[k] = value
            if not math.isfinite(value):
                runs[k].status, runs[k].live = "diverged", False
    grads = net.backward(grad)
    for k in values_of:
        if runs[k].live:
            norms[k] = _clip_or_norm(grads[k], runs[k].cfg.clip_grad_norm)
    for opt, lo_row, hi_row in groups:  # one step per group; stopped runs keep their bits
        mask = [runs[k].live for k in range(lo_row, hi_row)]
        if not any(mask):
            continue
        if opt.needs_closure:  # runs alone: its group is its one row
            k = lo_row
            opt.step_closure(_closure(net, runs[k], k, xb, idx, (values_of[k], grads[k])))
            if opt.diverged:  # a loss it evaluated within the step was not finite
                runs[k].status, runs[k].live = "diverged", False
        else:
            opt.step([grads[lo_row:hi_row]], rows=None if all(mask) else mask)
    return values_of, norms


def _closure(net, run: _Run, k: int, xb: np.ndarray, idx: np.ndarray, first: tuple[float, np.ndarray]):
    """What an optimizer that needs a closure (lbfgs) steps through: () -> (loss, gradient
    row) of run k on this batch at its current parameters. Its first call, at the
    parameters before the step, returns `first`, what the loop computed already (and
    recorded as the batch's loss); later calls run forward, loss and backward again."""
    pending = [first]

    def closure():
        if pending:
            return pending.pop()
        out = net.forward(xb, train=True)
        grad = np.zeros_like(out)
        values, grad[k:k + 1] = run.loss.value_and_grad(out[k:k + 1], run.targets[0][idx[k:k + 1]])
        return float(values[0]), net.backward(grad)[k]
    return closure


def _loss_groups(runs: list[_Run]) -> list[list[int]]:
    """The live runs by loss (name and settings): each group is one loss call per batch."""
    groups: dict = {}
    for k, r in enumerate(runs):
        if r.live:
            groups.setdefault(r.loss_key, []).append(k)
    return list(groups.values())


def _clip_or_norm(g: np.ndarray, clip: float | None) -> float:
    if clip is not None:
        return optimizers.clip_grad_norm([g], clip)
    return math.sqrt(float(np.dot(g, g)))


def _result(run: _Run, task: str, test: dict | None, wall: float) -> RunResult:
    metrics = TASK_METRICS[task]
    summary = _summarize(run.history, metrics, run.status)
    summary.update({f"test_{k}": (test or {}).get(k, math.nan) for k in metrics})
    return RunResult(run.status, len(run.history), run.history, summary, wall, run.net.n_params, run.saved,
                     run.paused)


def _summarize(history: list[dict], metrics: tuple[str, ...], status: str) -> dict[str, float]:
    last = history[-1] if history else {}
    out = {
        "final_train_loss": last.get("train_loss", math.nan) if status == "ok" else math.nan,
        "final_val_loss": last.get("val_loss", math.nan) if status == "ok" else math.nan,
    }
    for m in metrics:
        vals = [r[f"val_{m}"] for r in history if math.isfinite(r[f"val_{m}"])]
        best = (max if HIGHER_IS_BETTER[m] else min)(vals) if vals else math.nan
        # A diverged run never ranks best: its figures are NaN, not its luckiest epoch.
        out[f"best_val_{m}"] = best if status == "ok" else math.nan
    return out
