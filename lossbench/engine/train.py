"""One training run: batches, steps, per-epoch evaluation, early stopping, divergence.

`train(dataset, model=..., loss=..., optimizer=..., train=..., seed=...)` returns a
RunResult. The same arguments give the same numbers: the seed alone decides the
initial weights, the batch order and the dropout masks.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from lossbench.engine import losses, nn, optimizers, schedules
from lossbench.engine.metrics import HIGHER_IS_BETTER, TASK_METRICS
from lossbench.errors import ConfigError



@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int | str = 128  # "full": the whole training set each step
    shuffle: bool = True
    schedule: str | dict | None = None  # {name: cosine, ...}; stepped once per epoch
    clip_grad_norm: float | None = None
    early_stopping: dict | None = None  # {monitor: val_loss, patience: 5, min_delta: 0.0}

    def __post_init__(self):
        if not isinstance(self.epochs, int) or isinstance(self.epochs, bool) or self.epochs < 1:
            raise ConfigError(f"train.epochs: must be an integer >= 1, got {self.epochs!r}")
        bs = self.batch_size
        if bs != "full" and (not isinstance(bs, int) or isinstance(bs, bool) or bs < 1):
            raise ConfigError(f"train.batch_size: must be an integer >= 1 or 'full', got {bs!r}")
        if not isinstance(self.shuffle, bool):
            raise ConfigError(f"train.shuffle: must be true or false, got {self.shuffle!r}")
        if self.clip_grad_norm is not None and not self.clip_grad_norm > 0:
            raise ConfigError(f"train.clip_grad_norm: must be > 0, got {self.clip_grad_norm!r}")


@dataclass
class RunResult:
    status: str  # "ok" or "diverged"
    epochs: int  # epochs completed
    history: list[dict] = field(default_factory=list)
    summary: dict[str, float] = field(default_factory=dict)  # final/best/test figures
    wall_time_s: float = 0.0
    n_params: int = 0


def _named(spec: str | dict) -> tuple[str, dict]:
    if isinstance(spec, str):
        return spec, {}
    spec = dict(spec)
    return spec.pop("name"), spec


def encode_targets(loss: losses.Loss, loss_name: str, data) -> tuple[int, Callable[[np.ndarray], np.ndarray]]:
    """How many outputs the model needs and how labels become the loss's targets.

    Index losses take class indices; bce takes {0,1} — one logit for two classes,
    one per class (one-vs-rest) otherwise; regression losses take real values, one-hot
    on a classification dataset.
    """
    if data.task != "classification":
        if loss.target != "real":
            raise ConfigError(
                f"loss: {loss_name!r} needs a classification dataset, but {data.name!r} is a regression "
                f"dataset; use one of {sorted(n for n in losses.LOSSES.names() if losses.LOSSES.get(n).target == 'real')}"
            )
        return data.n_outputs, lambda y: y
    c = data.n_outputs
    eye = np.eye(c, dtype=np.float32)
    if loss.target == "index":
        return c, lambda y: y
    if loss.target == "binary" and c == 2:
        return 1, lambda y: y.astype(np.float32)[:, None]
    return c, lambda y: eye[y]


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


class _EarlyStopping:
    def __init__(self, metrics: tuple[str, ...], monitor: str = "val_loss", patience: int = 5, min_delta: float = 0.0):
        name = monitor.removeprefix("val_")
        if not monitor.startswith("val_") or name not in metrics:
            raise ConfigError(
                f"train.early_stopping.monitor: must be one of {['val_' + m for m in metrics]}, got {monitor!r}"
            )
        if not isinstance(patience, int) or isinstance(patience, bool) or patience < 1:
            raise ConfigError(f"train.early_stopping.patience: must be an integer >= 1, got {patience!r}")
        if min_delta < 0:
            raise ConfigError(f"train.early_stopping.min_delta: must be >= 0, got {min_delta}")
        self.key, self.patience, self.min_delta = monitor, patience, float(min_delta)
        self.sign = 1.0 if HIGHER_IS_BETTER[name] else -1.0
        self.best, self.bad = -math.inf, 0

    def should_stop(self, row: dict) -> bool:
        v = self.sign * row[self.key]
        if v > self.best + self.min_delta:
            self.best, self.bad = v, 0
        else:
            self.bad += 1
        return self.bad >= self.patience


def train(data, **kwargs) -> RunResult:
    """Train one model on `data` (a lossbench.data.Dataset) and evaluate it.

    Keyword arguments: model, loss, optimizer (a name or {name: ..., **hyperparams}),
    train (TrainConfig fields), seed, on_epoch. `on_epoch(row)` is called after every
    epoch with the history row, for progress displays; library code never prints.
    """
    # Overflow on the way to a NaN loss is expected: it is reported as "diverged".
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _train(data, **kwargs)


def _train(
    data,
    *,
    model: str | dict,
    loss: str | dict,
    optimizer: str | dict,
    train: dict | TrainConfig | None = None,
    seed: int = 0,
    on_epoch: Callable[[dict], Any] | None = None,
) -> RunResult:
    cfg = train if isinstance(train, TrainConfig) else TrainConfig(**(train or {}))
    loss_name, loss_kw = _named(loss)
    loss_fn = losses.build(loss_name, **loss_kw)
    n_out, encode = encode_targets(loss_fn, loss_name, data)
    t_train, t_val, t_test = encode(data.y_train), encode(data.y_val), encode(data.y_test)

    init_seed, order_seed = (int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(2))
    model_name, model_kw = _named(model)
    net = nn.build(model_name, data.n_features, n_out, seed=init_seed, **model_kw)
    opt_name, opt_kw = _named(optimizer)
    opt = optimizers.build(opt_name, [net.params], **opt_kw)
    sched = None
    if cfg.schedule is not None:
        s_name, s_kw = _named(cfg.schedule)
        sched = schedules.build(s_name, opt.lr, cfg.epochs, **s_kw)
    metrics = TASK_METRICS[data.task]
    if len(data.x_val) == 0 and (cfg.early_stopping or isinstance(sched, schedules.ReduceOnPlateau)):
        raise ConfigError("train: early_stopping and reduce_on_plateau watch the validation split, "
                          "but dataset.val_fraction is 0")
    stopper = _EarlyStopping(metrics, **cfg.early_stopping) if cfg.early_stopping else None

    x, n = data.x_train, len(data.x_train)
    full = cfg.batch_size == "full" or opt_name == "gd"  # gd is full-batch by definition
    bs = n if full else min(cfg.batch_size, n)
    rng = np.random.default_rng(order_seed)
    # One reused batch buffer: a fresh ~400 kB array per step costs page faults once
    # glibc hands such sizes to mmap, which made whole epochs up to 2x slower.
    xbuf = np.empty((bs, x.shape[1]), np.float32) if not full else None
    start = time.perf_counter()
    history: list[dict] = []
    status, step, prev_val = "ok", 0, None

    for epoch in range(1, cfg.epochs + 1):
        if sched is not None:
            opt.lr = sched(epoch - 1, prev_val)
        order = rng.permutation(n) if cfg.shuffle and not full else None
        loss_sum, norm_sum, batches = 0.0, 0.0, 0
        for lo in range(0, n, bs):
            if order is None:
                xb, tb = x[lo : lo + bs], t_train[lo : lo + bs]
            else:
                idx = order[lo : lo + bs]
                xb = np.take(x, idx, axis=0, out=xbuf[: len(idx)])
                tb = np.take(t_train, idx, axis=0)
            out = net.forward(xb, train=True)
            value, grad = loss_fn.value_and_grad(out, tb)
            if not math.isfinite(value):
                status = "diverged"
                break
            net.backward(grad)
            if cfg.clip_grad_norm is not None:
                gnorm = optimizers.clip_grad_norm([net.grads], cfg.clip_grad_norm)
            else:
                gnorm = math.sqrt(float(np.dot(net.grads, net.grads)))
            opt.step([net.grads])
            step += 1
            loss_sum += value * len(xb)  # weight the short last batch by its size
            norm_sum += gnorm
            batches += 1
        if status == "diverged":
            break
        val = _evaluate(net, loss_fn, data.x_val, t_val, data.y_val, data.task)
        row = {"epoch": epoch, "step": step, "train_loss": loss_sum / n}
        row.update({f"val_{k}": v for k, v in val.items()})
        row.update({"lr": opt.lr, "grad_norm": norm_sum / max(batches, 1), "elapsed_s": time.perf_counter() - start})
        history.append(row)
        if on_epoch is not None:
            on_epoch(row)
        prev_val = val["loss"]
        if not (math.isfinite(row["train_loss"]) and (len(data.x_val) == 0 or math.isfinite(prev_val))):
            status = "diverged"
            break
        if stopper is not None and stopper.should_stop(row):
            break

    summary = _summarize(history, metrics, status)
    if status == "ok":
        test = _evaluate(net, loss_fn, data.x_test, t_test, data.y_test, data.task)
        summary.update({f"test_{k}": v for k, v in test.items()})
    else:
        summary.update({f"test_{k}": math.nan for k in metrics})
    return RunResult(status, len(history), history, summary, time.perf_counter() - start, net.n_params)


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
