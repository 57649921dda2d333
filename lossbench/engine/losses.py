"""Losses: value and gradient with respect to the model output, mean over the batch.

Each follows its torch.nn.functional namesake (formula, defaults, 'mean' reduction) in
float32. `target` says what the loss trains against:
  "index"  class indices (cross_entropy, hinge, squared_hinge)
  "binary" {0,1} labels of the same shape as the logits (bce, focal); the margin
           losses on ±1 labels (soft_margin, binary_hinge) map them as y = 2t - 1
           themselves, so the model keeps one output for two classes
  "real"   real values of the same shape as the target (regression losses; a
           classification dataset is trained against one-hot targets); a loss with
           `outputs_per_target` 2 (gaussian_nll) takes twice as many outputs
A loss's `predict(out)` maps the model's outputs to the target's units for the
metrics (poisson_nll: the rate exp(out); gaussian_nll: the mean half).
"""

from __future__ import annotations

import numpy as np

from lossbench.registry import Bool, Real, Registry

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
    outputs_per_target = 1  # model outputs per target column ("real" targets only)
    nonnegative_targets = False  # True: refused on data with a negative target (counts, rates)

    def predict(self, out: np.ndarray) -> np.ndarray:
        """The model's outputs in the target's units, for metrics (identity by default)."""
        return out

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


def _softplus(z: np.ndarray) -> np.ndarray:
    """log(1 + exp(z)) without overflow."""
    return np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))


def _sigmoid(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sigmoid(z), 1 - sigmoid(z)), each without overflow or cancellation."""
    e = np.exp(-np.abs(z))
    big, small = 1.0 / (1.0 + e), e / (1.0 + e)
    return np.where(z >= 0, big, small), np.where(z >= 0, small, big)


@LOSSES.register("poisson_nll", full=Bool())
class PoissonNLL(Loss):
    """Poisson negative log-likelihood with the output as the log rate, F.poisson_nll_loss.

    loss = mean(exp(x) - t x), x = log(rate): torch's log_input=True, so every output is a
    valid rate and eps (used only with log_input=False) never enters; the metrics see exp(x).
    full adds Stirling's log(t!) ~ t log t - t + 0.5 log(2 pi t) where t > 1 (no gradient).
    grad = (exp(x) - t) / numel
    """

    nonnegative_targets = True  # a negative count has no likelihood: the loss has no minimum

    def __init__(self, full: bool = False):
        self.full = bool(full)

    def predict(self, out):
        return np.exp(out)

    def value_and_grad(self, pred, target):
        r = np.exp(pred)
        v = r - target * pred
        if self.full:
            big = target > 1
            t = np.where(big, target, 1.0)  # log only where the term counts
            v = v + np.where(big, t * np.log(t) - t + 0.5 * np.log(2 * np.pi * t), 0.0)
        return _mean(v), ((r - target) * _per_run(pred)).astype(np.float32)


@LOSSES.register("gaussian_nll", full=Bool(), eps=Real(gt=0))
class GaussianNLL(Loss):
    """Gaussian negative log-likelihood of a predicted mean and variance, F.gaussian_nll_loss.

    The model gives two outputs per target, [mu | s] (n means, then n raw variances), and
    var = softplus(s) keeps the variance positive, as torch requires (softplus, not exp:
    it grows linearly, so a large s cannot overflow the variance).
    v = max(var, eps): torch clamps under no_grad, so where the clamp acts the gradient is
    still 0.5 (1/v - d^2/v^2) at v (not the flat value's 0), and so is ours
    loss = mean(0.5 (log v + (mu - t)^2 / v)) (+ 0.5 log(2 pi) if full), over the n targets
    grad_mu = (mu - t) / v / numel;  grad_s = 0.5 (1/v - (mu - t)^2 / v^2) sigmoid(s) / numel
    """

    outputs_per_target = 2

    def __init__(self, full: bool = False, eps: float = 1e-6):
        self.full, self.eps = bool(full), float(eps)

    def predict(self, out):
        return out[..., : out.shape[-1] // 2]

    def value_and_grad(self, pred, target):
        n = pred.shape[-1] // 2
        mu, s = pred[..., :n], pred[..., n:]
        v = np.maximum(_softplus(s), np.float32(self.eps))
        d = mu - target
        r = d / v
        loss = 0.5 * (np.log(v) + d * r)
        if self.full:
            loss = loss + np.float32(0.5 * np.log(2 * np.pi))
        k = _per_run(d)
        g = np.empty(pred.shape, np.float32)
        g[..., :n] = r * k
        g[..., n:] = (0.5 * (1.0 / v - r * r)) * _sigmoid(s)[0] * k
        return _mean(loss), g


@LOSSES.register("quantile", quantile=Real(gt=0, lt=1))
class Quantile(Loss):
    """Pinball loss, whose minimizer is the `quantile`-th conditional quantile of the target.

    loss = mean(max(q d, (q - 1) d)), d = target - pred, q = quantile (0.5: half of mae)
    grad = -q where d > 0, 1 - q where d < 0, 0 at d = 0 (as mae), over numel
    """

    def __init__(self, quantile: float = 0.5):
        self.q = float(quantile)

    def value_and_grad(self, pred, target):
        d = target - pred
        q = np.float32(self.q)
        v = np.maximum(q * d, (q - 1) * d)
        g = np.where(d > 0, -q, np.where(d < 0, 1 - q, np.float32(0.0)))
        return _mean(v), (g * _per_run(d)).astype(np.float32)


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


@LOSSES.register("focal", alpha=Real(le=1), gamma=Real(ge=0))
class SigmoidFocal(Loss):
    """Sigmoid focal loss on logits, torchvision.ops.sigmoid_focal_loss (RetinaNet's).

    bce down-weighted where it is already small: p = sigmoid(x), q = 1 - p_t = p (1-t) + (1-p) t,
    loss = mean(alpha_t q^gamma bce(x, t)), alpha_t = alpha t + (1 - alpha)(1 - t); alpha < 0:
    no weighting (alpha_t = 1), as torchvision. gamma = 0 and alpha < 0 is bce.
    grad = alpha_t (q^gamma (p - t) + gamma q^(gamma-1) p (1-p) (1 - 2t) bce) / numel
    """

    target = "binary"

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0):
        self.alpha, self.gamma = float(alpha), float(gamma)

    def value_and_grad(self, pred, target):
        x, t = pred, target
        ce = _softplus(x) - x * t
        p, pm = _sigmoid(x)  # pm = 1 - p, without cancellation
        q = p * (1 - t) + pm * t
        gm = np.float32(self.gamma)
        w = q**gm
        g = w * (p - t)
        if self.gamma:
            with np.errstate(divide="ignore", invalid="ignore"):  # q = 0: the term's limit is 0
                dw = np.where(q > 0, gm * q ** (gm - 1), 0.0)
            g += dw * p * pm * (1 - 2 * t) * ce
        v = w * ce
        if self.alpha >= 0:
            a = np.float32(self.alpha)
            at = a * t + (1 - a) * (1 - t)
            v, g = at * v, at * g
        return _mean(v), (g * _per_run(x)).astype(np.float32)


@LOSSES.register("focal_softmax", gamma=Real(ge=0))
class SoftmaxFocal(Loss):
    """Softmax focal loss on logits and class indices: cross-entropy down-weighted by (1 - p_y)^gamma.

    The multiclass form of the focal loss paper (Lin et al. 2017), without class weights
    (torchvision has only the sigmoid form, `focal`); gamma = 0 is cross_entropy.
    loss = mean_i -(1 - p_iy)^gamma log p_iy, p = softmax(x)
    grad = ((1-p_y)^gamma - gamma (1-p_y)^(gamma-1) p_y log p_y) (p - onehot) / N
    """

    target = "index"

    def __init__(self, gamma: float = 2.0):
        self.gamma = float(gamma)

    def value_and_grad(self, pred, target):
        n = pred.shape[-2]
        logp = _log_softmax(pred)
        ly = _at(logp, target)
        py = np.exp(ly)
        qy = -np.expm1(ly)  # 1 - p_y without cancellation
        gm = np.float32(self.gamma)
        w = qy**gm
        scale = w
        if self.gamma:
            with np.errstate(divide="ignore", invalid="ignore"):
                dw = np.where(qy > 0, gm * qy ** (gm - 1), 0.0)
            scale = w - dw * py * ly
        g = np.exp(logp)
        _add_at(g, target, -1.0)
        g *= (scale * np.float32(1.0 / n))[..., None]
        return _mean(-w * ly, -1), g.astype(np.float32)


@LOSSES.register("soft_margin")
class SoftMargin(Loss):
    """Two-class logistic loss on ±1 labels, F.soft_margin_loss.

    loss = mean(log(1 + exp(-y x))), y = 2t - 1 from the {0,1} labels (so one output for
    two classes, as bce, whose value it equals on {0,1} labels)
    grad = -y sigmoid(-y x) / numel
    """

    target = "binary"

    def value_and_grad(self, pred, target):
        y = 2 * target - 1
        z = -y * pred
        return _mean(_softplus(z)), (-y * _sigmoid(z)[0] * _per_run(pred)).astype(np.float32)


@LOSSES.register("binary_hinge")
class BinaryHinge(Loss):
    """The SVM hinge loss on one output and ±1 labels, scikit-learn's hinge_loss.

    loss = mean(max(0, 1 - y x)), y = 2t - 1 from the {0,1} labels (torch has no namesake)
    grad = -y / numel where 1 - y x > 0, else 0 (0 at the kink, as relu)
    """

    target = "binary"

    def value_and_grad(self, pred, target):
        y = 2 * target - 1
        m = 1 - y * pred
        return _mean(np.maximum(m, 0.0)), (np.where(m > 0, -y, 0.0) * _per_run(pred)).astype(np.float32)


def build(name: str, /, **hyperparams) -> Loss:
    """`losses.build("huber", delta=1.0)`: a loss by its registered name."""
    return LOSSES.build(name, **hyperparams)
