"""One training run: batches, steps, per-epoch evaluation, early stopping, divergence.

`train(dataset, model=..., loss=..., optimizer=..., train=..., seed=...)` returns a
RunResult. The same arguments give the same numbers: the seed alone decides the
initial weights, the batch order and the dropout masks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lossbench.engine import losses, nn, optimizers, schedules
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

    @classmethod
    def of(cls, options: dict) -> TrainConfig:
        return cls(**TRAIN.check(options, "train"))

    @property
    def watches_validation(self) -> bool:
        """Early stopping and reduce_on_plateau need a validation split."""
        plateau = self.schedule is not None and \
            split_named("train.schedule", self.schedule, "schedule")[0] == "reduce_on_plateau"
        return self.early_stopping is not None or plateau


TRAIN = Schema.of(TrainConfig, owner="train", epochs=Int(ge=1), batch_size=AnyOf(Int(ge=1), Choice("full")),
                  shuffle=Bool(), schedule=Optional(Named(schedules.SCHEDULES)), clip_grad_norm=Optional(Real(gt=0)),
                  early_stopping=Optional(Nested(EARLY_STOPPING, "a mapping {monitor, patience, min_delta}")))


@dataclass
class RunResult:
    status: str  # "ok" or "diverged"
    epochs: int  # epochs completed
    history: list[dict] = field(default_factory=list)
    summary: dict[str, float] = field(default_factory=dict)  # final/best/test figures
    wall_time_s: float = 0.0
    n_params: int = 0


def model_outputs(loss: losses.Loss, loss_name: str, task: str, n_outputs: int, dataset: str) -> int:
    """How many outputs the model needs for `loss` on a dataset of this task and size.

    Index losses take class indices; bce takes {0,1}: one logit for two classes, one per
    class (one-vs-rest) otherwise; regression losses take real values (one-hot on a
    classification dataset). A classification loss on regression data is a ConfigError.
    """
    if task != "classification":
        if loss.target != "real":
            real = sorted(n for n in losses.LOSSES.names() if losses.LOSSES.get(n).target == "real")
            raise fail("loss.name", f"must be a regression loss on the regression dataset {dataset!r} "
                                    f"(one of {real})", loss_name)
        return n_outputs
    return 1 if loss.target == "binary" and n_outputs == 2 else n_outputs


def encode_targets(loss: losses.Loss, loss_name: str, data) -> tuple[int, Callable[[np.ndarray], np.ndarray]]:
    """(model outputs, how the dataset's labels become the loss's targets)."""
    n_out = model_outputs(loss, loss_name, data.task, data.n_outputs, data.name)
    if data.task != "classification" or loss.target == "index":
        return n_out, lambda y: y
    if n_out == 1:  # bce on two classes: one logit
        return 1, lambda y: y.astype(np.float32)[:, None]
    eye = np.eye(n_out, dtype=np.float32)
    return n_out, lambda y: eye[y]


def _evaluate(net, loss, x, t, y, task) -> dict[str, float]:
    if len(x) == 0:
        return {m: math.nan for m in TASK_METRICS[task]}
    out = net.predict(x)
    res = {"loss": loss.value(out, t)}
    if task == "classification":
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


def train(data, **kwargs) -> RunResult:
    """Train one model on `data` (a lossbench.data.Dataset) and evaluate it.

    Keyword arguments: model, loss, optimizer (a name or {name: ..., **hyperparams}),
    train (TrainConfig fields), seed, on_epoch. `on_epoch(row)` is called after every
    epoch with the history row, for progress displays; library code never prints.
    """
    # Overflow on the way to a NaN loss is expected: it is reported as "diverged".
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _train(data, **kwargs)


@dataclass
class _Run:
    """Everything one run trains with, built from its config and seed."""

    cfg: TrainConfig
    loss: losses.Loss
    targets: tuple  # train, val, test targets encoded for the loss
    net: nn.Sequential
    opt: optimizers.Optimizer
    sched: schedules.Schedule | None
    stopper: EarlyStopping | None
    full_batch: bool
    order_rng: np.random.Generator


def _setup(data, model, loss, optimizer, train, seed) -> _Run:
    cfg = train if isinstance(train, TrainConfig) else TrainConfig.of(train or {})
    loss_name, loss_kw = split_named("loss", loss, "loss")
    loss_fn = losses.build(loss_name, **loss_kw)
    n_out, encode = encode_targets(loss_fn, loss_name, data)
    targets = (encode(data.y_train), encode(data.y_val), encode(data.y_test))
    init_seed, order_seed = (int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(2))
    model_name, model_kw = split_named("model", model, "model")
    net = nn.build(model_name, data.n_features, n_out, init_seed, data.image_shape, **model_kw)
    opt_name, opt_kw = split_named("optimizer", optimizer, "optimizer")
    opt = optimizers.build(opt_name, [net.params], **opt_kw)
    sched = None
    if cfg.schedule is not None:
        s_name, s_kw = split_named("train.schedule", cfg.schedule, "schedule")
        sched = schedules.build(s_name, opt.lr, cfg.epochs, **s_kw)
    if len(data.x_val) == 0 and cfg.watches_validation:
        raise fail("dataset.val_fraction", "must be > 0 when train.early_stopping or reduce_on_plateau watch "
                                           "the validation split", 0)
    metrics = TASK_METRICS[data.task]
    stopper = EarlyStopping(metrics, **cfg.early_stopping) if cfg.early_stopping else None
    full = cfg.batch_size == "full" or opt_name == "gd"  # gd is full-batch by definition
    return _Run(cfg, loss_fn, targets, net, opt, sched, stopper, full, np.random.default_rng(order_seed))


def _train(data, *, model: str | dict, loss: str | dict, optimizer: str | dict,
           train: dict | TrainConfig | None = None, seed: int = 0,
           on_epoch: Callable[[dict], Any] | None = None) -> RunResult:
    run = _setup(data, model, loss, optimizer, train, seed)
    n = len(data.x_train)
    bs = n if run.full_batch else min(run.cfg.batch_size, n)
    # One reused batch buffer: a fresh ~400 kB array per step costs page faults once
    # glibc hands such sizes to mmap, which made whole epochs up to 2x slower.
    xbuf = np.empty((bs, data.x_train.shape[1]), np.float32) if not run.full_batch else None
    start = time.perf_counter()
    history: list[dict] = []
    status, step, prev_val = "ok", 0, None
    for epoch in range(1, run.cfg.epochs + 1):
        if run.sched is not None:
            run.opt.lr = run.sched(epoch - 1, prev_val)
        fit = _fit_epoch(run, data.x_train, bs, xbuf)
        if fit is None:
            status = "diverged"
            break
        loss_sum, norm_sum, batches, steps = fit
        step += steps
        val = _evaluate(run.net, run.loss, data.x_val, run.targets[1], data.y_val, data.task)
        row = {"epoch": epoch, "step": step, "train_loss": loss_sum / n}
        row.update({f"val_{k}": v for k, v in val.items()})
        row.update(lr=run.opt.lr, grad_norm=norm_sum / max(batches, 1), elapsed_s=time.perf_counter() - start)
        history.append(row)
        if on_epoch is not None:
            on_epoch(row)
        prev_val = val["loss"]
        if not (math.isfinite(row["train_loss"]) and (len(data.x_val) == 0 or math.isfinite(prev_val))):
            status = "diverged"
            break
        if run.stopper is not None and run.stopper.should_stop(row):
            break
    return _result(run, data, status, history, start)


def _fit_epoch(run: _Run, x: np.ndarray, bs: int, xbuf) -> tuple[float, float, int, int] | None:
    """One pass over the training set: (loss sum, grad-norm sum, batches, steps), or None
    as soon as a batch's loss is not finite (the run diverged)."""
    n, t_train = len(x), run.targets[0]
    order = run.order_rng.permutation(n) if run.cfg.shuffle and not run.full_batch else None
    loss_sum, norm_sum, batches = 0.0, 0.0, 0
    for lo in range(0, n, bs):
        if order is None:
            xb, tb = x[lo : lo + bs], t_train[lo : lo + bs]
        else:
            idx = order[lo : lo + bs]
            xb = np.take(x, idx, axis=0, out=xbuf[: len(idx)])
            tb = np.take(t_train, idx, axis=0)
        out = run.net.forward(xb, train=True)
        value, grad = run.loss.value_and_grad(out, tb)
        if not math.isfinite(value):
            return None
        run.net.backward(grad)
        if run.cfg.clip_grad_norm is not None:
            gnorm = optimizers.clip_grad_norm([run.net.grads], run.cfg.clip_grad_norm)
        else:
            gnorm = math.sqrt(float(np.dot(run.net.grads, run.net.grads)))
        run.opt.step([run.net.grads])
        loss_sum += value * len(xb)  # weight the short last batch by its size
        norm_sum += gnorm
        batches += 1
    return loss_sum, norm_sum, batches, batches


def _result(run: _Run, data, status: str, history: list[dict], start: float) -> RunResult:
    metrics = TASK_METRICS[data.task]
    summary = _summarize(history, metrics, status)
    if status == "ok":
        test = _evaluate(run.net, run.loss, data.x_test, run.targets[2], data.y_test, data.task)
        summary.update({f"test_{k}": v for k, v in test.items()})
    else:
        summary.update({f"test_{k}": math.nan for k in metrics})
    return RunResult(status, len(history), history, summary, time.perf_counter() - start, run.net.n_params)


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
