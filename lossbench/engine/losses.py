"""Losses: value and gradient with respect to the model output, mean over the batch.

Each follows its torch.nn.functional namesake (formula, defaults, 'mean' reduction) in
float32. `target` says what the loss trains against:
  "index"  class indices (cross_entropy, hinge, squared_hinge)
  "binary" {0,1} labels of the same shape as the logits (bce)
  "real"   real values of the same shape as the output (regression losses; a
           classification dataset is trained against one-hot targets)
"""

from __future__ import annotations

import numpy as np

from lossbench.registry import Real, Registry

LOSSES = Registry("loss")


class Loss:
    """A loss: `value_and_grad(pred, target)` -> (mean loss over the batch, d loss / d pred).

    A subclass promises: the value is the mean over the batch as its torch namesake's
    'mean' reduction (float); the gradient has pred's shape and dtype (float32) and is a
    new array the caller may overwrite (backprop does, in place); `pred` and `target` are
    not modified. `target` says what the loss trains against (see the module docstring).
    Stacked runs: pred (K, B, C) and target (K, B[, C]) give K values (an array) and the
    (K, B, C) gradient, each run's exactly as it is computed for a stack of one; so a
    loss works on the last axes only (axis=-1, take_along_axis, sizes per run).
    Register it with the constraints of its hyperparameters, and add its torch parity case.
    """

    target = "real"

    def value(self, pred: np.ndarray, target: np.ndarray) -> float:
        return self.value_and_grad(pred, target)[0]

    def grad(self, pred: np.ndarray, target: np.ndarray) -> np.ndarray:
        return self.value_and_grad(pred, target)[1]

    def value_and_grad(self, pred, target) -> tuple[float, np.ndarray]:
        """One pass for both, as training needs them; subclasses implement this."""
        raise NotImplementedError


def _mean(v: np.ndarray, axes=(-2, -1)):
    """The mean over each run's batch: a float for one run, K values for a stack."""
    m = np.mean(v, axis=axes)
    return float(m) if m.ndim == 0 else m


def _per_run(d: np.ndarray) -> np.float32:
    """1 / the number of elements of one run's batch (B * C)."""
    return np.float32(1.0 / (d.shape[-1] * d.shape[-2]))


# ---- regression losses: elementwise on pred - target, mean over every element ----


@LOSSES.register("mse")
class MSE(Loss):
    """Mean squared error, F.mse_loss.

    mean((pred - target)^2)
    """

    def value_and_grad(self, pred, target):
        d = pred - target
        return _mean(d * d), d * (2 * _per_run(d))


@LOSSES.register("mae")
class MAE(Loss):
    """Mean absolute error, F.l1_loss.

    mean|pred - target|; the gradient at 0 is 0, as torch's sign().
    """

    def value_and_grad(self, pred, target):
        d = pred - target
        return _mean(np.abs(d)), np.sign(d) * _per_run(d)


@LOSSES.register("huber", delta=Real(gt=0))
class Huber(Loss):
    """Huber loss: quadratic near zero, linear beyond delta, F.huber_loss.

    0.5 d^2 if |d| < delta else delta (|d| - 0.5 delta), d = pred - target
    """

    def __init__(self, delta: float = 1.0):
        self.delta = float(delta)

    def value_and_grad(self, pred, target):
        d = pred - target
        a = np.abs(d)
        dl = np.float32(self.delta)
        v = np.where(a < dl, 0.5 * d * d, dl * (a - 0.5 * dl))
        return _mean(v), np.clip(d, -dl, dl) * _per_run(d)


@LOSSES.register("smooth_l1", beta=Real(ge=0))
class SmoothL1(Loss):
    """Smooth L1 loss, Huber scaled by 1/beta, F.smooth_l1_loss (beta=0: L1).

    0.5 d^2 / beta if |d| < beta else |d| - 0.5 beta
    """

    def __init__(self, beta: float = 1.0):
        self.beta = float(beta)

    def value_and_grad(self, pred, target):
        d = pred - target
        a = np.abs(d)
        n = _per_run(d)
        if self.beta == 0.0:
            return _mean(a), np.sign(d) * n
        b = np.float32(self.beta)
        v = np.where(a < b, 0.5 * d * d / b, a - 0.5 * b)
        return _mean(v), np.clip(d / b, -1.0, 1.0).astype(np.float32) * n


@LOSSES.register("log_cosh")
class LogCosh(Loss):
    """Log-cosh loss, smooth like MSE near zero and like MAE far out (Keras' LogCosh).

    mean(log(cosh(d))), computed as |d| + log1p(exp(-2|d|)) - log 2 so it never overflows
    """

    def value_and_grad(self, pred, target):
        d = pred - target
        a = np.abs(d)
        v = a + np.log1p(np.exp(-2.0 * a)) - np.float32(np.log(2.0))
        return _mean(v), np.tanh(d) * _per_run(d)


# ---- classification losses ----


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _flat(a: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Where each sample's entry for its class is in a.ravel() (a C-contiguous; a flat
    index is several times cheaper than take_along_axis on small batches)."""
    return np.arange(0, a.size, a.shape[-1]) + target.ravel()


def _at(a: np.ndarray, target: np.ndarray) -> np.ndarray:
    """a[..., i, target[..., i]]: each sample's entry for its class."""
    return np.ascontiguousarray(a).ravel()[_flat(a, target)].reshape(target.shape)


def _add_at(a: np.ndarray, target: np.ndarray, v) -> None:
    """a[..., i, target[..., i]] += v, in place (a C-contiguous: a fresh array)."""
    a.reshape(-1)[_flat(a, target)] += v


@LOSSES.register("cross_entropy", label_smoothing=Real(ge=0, le=1))
class CrossEntropy(Loss):
    """Softmax cross-entropy on logits with label smoothing, F.cross_entropy.

    loss = mean_i[ (1-eps) * -logp[i, y_i] + eps/C * sum_c -logp[i, c] ], eps = label_smoothing
    grad = (softmax - ((1-eps) onehot + eps/C)) / N: the fused, stable form
    """

    target = "index"

    def __init__(self, label_smoothing: float = 0.0):
        self.eps = float(label_smoothing)

    def value_and_grad(self, pred, target):
        n, c = pred.shape[-2:]
        logp = _log_softmax(pred)
        nll = -_at(logp, target)
        if self.eps:
            loss = (1.0 - self.eps) * nll - (self.eps / c) * logp.sum(axis=-1)
        else:
            loss = nll
        g = np.exp(logp)
        if self.eps:
            g -= np.float32(self.eps / c)
        _add_at(g, target, -np.float32(1.0 - self.eps))
        g *= np.float32(1.0 / n)
        return _mean(loss, -1), g


@LOSSES.register("bce")
class BCEWithLogits(Loss):
    """Binary cross-entropy on logits, F.binary_cross_entropy_with_logits.

    loss = mean(max(x, 0) - x t + log(1 + exp(-|x|)))
    grad = (sigmoid(x) - t) / numel
    """

    target = "binary"

    def value_and_grad(self, pred, target):
        x = pred
        e = np.exp(-np.abs(x))
        v = np.maximum(x, 0.0) - x * target + np.log1p(e)
        sig = np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
        return _mean(v), ((sig - target) * _per_run(x)).astype(np.float32)


@LOSSES.register("hinge", margin=Real())
class MultiMargin(Loss):
    """Multiclass hinge loss (a multiclass SVM), F.multi_margin_loss with p=1.

    mean_i sum_{j != y_i} max(0, margin - x[y_i] + x[j]) / C
    """

    target = "index"
    p = 1

    def __init__(self, margin: float = 1.0):
        self.margin = float(margin)

    def value_and_grad(self, pred, target):
        n, c = pred.shape[-2:]
        m = np.float32(self.margin) - _at(pred, target)[..., None] + pred
        at = _flat(m, target)
        m.reshape(-1)[at] = 0.0  # j == y is not a violation
        h = np.maximum(m, 0.0)
        v = (h**self.p).sum(axis=-1) / c
        # d/dx_j = p h^(p-1) for active j != y; d/dx_y = -sum of those.
        g = (h > 0).astype(np.float32) if self.p == 1 else np.float32(self.p) * h ** (self.p - 1)
        g.reshape(-1)[at] = -g.sum(axis=-1).ravel()
        g *= np.float32(1.0 / (n * c))
        return _mean(v, -1), g


@LOSSES.register("squared_hinge", margin=Real())
class SquaredMultiMargin(MultiMargin):
    """Multiclass squared hinge loss, F.multi_margin_loss with p=2.

    mean_i sum_{j != y_i} max(0, margin - x[y_i] + x[j])^2 / C
    """

    p = 2


def build(name: str, /, **hyperparams) -> Loss:
    """`losses.build("huber", delta=1.0)`: a loss by its registered name."""
    return LOSSES.build(name, **hyperparams)
