"""Layers: each forward returns (output, backprop) and backprop sits right next to it.

A layer with parameters declares their shapes; the model hands it views into one flat
float32 buffer (and a matching gradient buffer), so backprop writes gradients in place
and an optimizer step is one vectorized update over the whole model. Backprop closures
capture what they need, so no per-batch cache hangs on the layer (thinc's idea), and
derivatives reuse forward outputs where they can (scikit-learn's).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from lossbench.registry import Real, Registry, fail

LAYERS = Registry("layer", section="model", context=("n_in", "n_out", "rng"))
ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid", "gelu")
INITS = ("torch", "he", "xavier")


class Layer:
    """One step of a model: `forward(x, train)` returns `(y, backprop)`.

    `backprop(dy, need_dx=True)` is a closure over what the forward pass computed (no
    per-batch cache hangs on the layer). It writes the gradients of the layer's own
    parameters into the views `self.grads` (overwriting, not accumulating) and returns
    d loss / d x, or None when `need_dx` is False (the first layer: nobody needs the
    data's gradient). It MAY overwrite `dy` in place and return it: callers pass a `dy`
    they no longer need. A layer with parameters declares their `shapes`; the model
    `bind`s views of its flat buffers to them and calls `init(rng, scheme)` once.
    A parameterless layer keeps the defaults below.
    """

    shapes: tuple[tuple[int, ...], ...] = ()
    # per parameter: stored as the transpose of torch's layout (Linear's (n_in, n_out)
    # weight); optimizers that work on matrices (Muon, Adafactor) see torch's orientation
    transposed: tuple[bool, ...] = ()

    def bind(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        self.params, self.grads = params, grads

    def init(self, rng: np.random.Generator, scheme: str) -> None:
        pass

    def forward(self, x: np.ndarray, train: bool):
        raise NotImplementedError


class Tensor(NamedTuple):
    """One tensor of a model's flat parameter buffer, as optimizers see it (`layout`)."""

    name: str  # "2.Linear.weight": the layer's index and class, then weight or bias
    shape: tuple  # as stored in the buffer
    transposed: bool = False  # stored as the transpose of torch's layout (Linear's weight)
    layer: int = 0  # the index of its layer among the layers with parameters (0: the input layer)
    last: bool = False  # a tensor of the last layer with parameters (the output layer)

    @property
    def torch_shape(self) -> tuple:
        return self.shape[::-1] if self.transposed else self.shape


def init_affine(params, rng, scheme: str, fan_in: int, fan_out: int) -> None:
    """Initialize [weight] or [weight, bias] in place: torch's default for nn.Linear and
    nn.Conv2d (both uniform in ±1/sqrt(fan_in)), or He / Xavier with the bias at 0."""
    w = params[0]
    b = params[1] if len(params) > 1 else None
    if scheme == "torch":
        # kaiming_uniform_(a=sqrt(5)) is uniform in ±1/sqrt(fan_in); the bias likewise
        bound = 1.0 / math.sqrt(fan_in)
        w[...] = rng.uniform(-bound, bound, w.shape)
        if b is not None:
            b[...] = rng.uniform(-bound, bound, b.shape)
        return
    if scheme == "he":  # torch.nn.init.kaiming_normal_ (fan_in, relu gain)
        w[...] = rng.standard_normal(w.shape) * math.sqrt(2.0 / fan_in)
    elif scheme == "xavier":  # torch.nn.init.xavier_uniform_
        a = math.sqrt(6.0 / (fan_in + fan_out))
        w[...] = rng.uniform(-a, a, w.shape)
    else:
        raise fail("model.init", f"must be one of {list(INITS)}", scheme, INITS)
    if b is not None:
        b[...] = 0.0


@LAYERS.register("linear")
class Linear(Layer):
    """Affine map, torch.nn.Linear with W stored transposed.

    y = x @ W + b, W of shape (n_in, n_out) so both passes are plain row-major GEMMs

    Stacked (K runs trained as one, see Sequential.stack): x is (K, B, n_in), W (K, n_in,
    n_out) and b (K, n_out); every product is then one batched matmul, one GEMM per run.
    """

    transposed = (True, False)

    def __init__(self, n_in: int, n_out: int):
        self.shapes = ((n_in, n_out), (n_out,))

    def init(self, rng, scheme):
        init_affine(self.params, rng, scheme, *self.params[0].shape)  # W is (fan_in, fan_out)

    def forward(self, x, train):
        w, b = self.params
        gw, gb = self.grads
        y = np.matmul(x, w)
        y += b[:, None, :] if b.ndim == 2 else b

        def backprop(dy, need_dx=True):
            np.matmul(x.swapaxes(-1, -2), dy, out=gw)
            dy.sum(axis=-2, out=gb)
            return np.matmul(dy, w.swapaxes(-1, -2)) if need_dx else None

        return y, backprop


@LAYERS.register("relu")
class ReLU(Layer):
    """Rectified linear unit, torch.nn.ReLU.

    y = max(x, 0); dx = dy where y > 0, else 0
    """

    def forward(self, x, train):
        y = np.maximum(x, 0.0)

        def backprop(dy, need_dx=True):
            # The output is zero exactly where the gradient is blocked.
            return np.multiply(dy, y > 0.0, out=dy)

        return y, backprop


@LAYERS.register("leaky_relu", negative_slope=Real())
class LeakyReLU(Layer):
    """ReLU with a small slope for negative inputs, torch.nn.LeakyReLU.

    y = x if x > 0 else negative_slope * x
    """

    def __init__(self, negative_slope: float = 0.01):
        self.slope = negative_slope

    def forward(self, x, train):
        pos = x > 0.0
        y = np.where(pos, x, x * np.float32(self.slope))

        def backprop(dy, need_dx=True):
            return dy * np.where(pos, np.float32(1.0), np.float32(self.slope))

        return y, backprop


@LAYERS.register("tanh")
class Tanh(Layer):
    """Hyperbolic tangent, torch.nn.Tanh.

    y = tanh(x); dx = dy (1 - y^2)
    """

    def forward(self, x, train):
        y = np.tanh(x)

        def backprop(dy, need_dx=True):
            return dy * (1.0 - y * y)

        return y, backprop


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # exp(-|x|) never overflows; the two branches of the logistic share it.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)


@LAYERS.register("sigmoid")
class Sigmoid(Layer):
    """Logistic function, torch.nn.Sigmoid.

    y = 1 / (1 + exp(-x)); dx = dy y (1 - y)
    """

    def forward(self, x, train):
        y = _sigmoid(x)

        def backprop(dy, need_dx=True):
            return dy * y * (1.0 - y)

        return y, backprop


def _erf(x: np.ndarray) -> np.ndarray:
    """erf to |error| < 1.5e-7 (Abramowitz & Stegun 7.1.26), below float32 resolution.

    NumPy has no erf, and torch's default GELU is the exact erf form, not the tanh one.
    """
    s = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return s * (1.0 - poly * np.exp(-a * a))


@LAYERS.register("gelu")
class GELU(Layer):
    """Gaussian error linear unit with the exact normal CDF, torch.nn.GELU().

    y = x Phi(x); dx = dy (Phi(x) + x phi(x))
    """

    def forward(self, x, train):
        x64 = x.astype(np.float64)
        cdf = 0.5 * (1.0 + _erf(x64 / math.sqrt(2.0)))
        y = (x64 * cdf).astype(x.dtype)

        def backprop(dy, need_dx=True):
            pdf = np.exp(-0.5 * x64 * x64) / math.sqrt(2.0 * math.pi)
            return (dy * (cdf + x64 * pdf)).astype(dy.dtype)

        return y, backprop


@LAYERS.register("dropout", p=Real(ge=0, lt=1))
class Dropout(Layer):
    """Inverted dropout, torch.nn.Dropout.

    training: zero each input with probability p, scale the rest by 1/(1-p)
    evaluation: identity
    """

    def __init__(self, p: float = 0.5, rng: np.random.Generator | None = None):
        self.p = p
        self.rng = rng if rng is not None else np.random.default_rng(0)

    def forward(self, x, train):
        if not train or self.p == 0.0:
            return x, lambda dy, need_dx=True: dy
        mask = self.mask(x.shape)
        y = x * mask

        def backprop(dy, need_dx=True):
            return np.multiply(dy, mask, out=dy)

        return y, backprop

    def mask(self, shape) -> np.ndarray:
        """The scaled keep-mask of one batch: 0 or 1/(1-p), from this layer's generator."""
        mask = (self.rng.random(shape, dtype=np.float32) >= self.p).astype(np.float32)
        mask *= np.float32(1.0 / (1.0 - self.p))
        return mask


class StackedDropout(Dropout):
    """Dropout over K stacked runs, (K, B, F): each run's mask comes from its own
    generator, drawn as that run would draw it alone."""

    def __init__(self, runs: list[Dropout]):
        self.p, self.runs = runs[0].p, runs

    def mask(self, shape) -> np.ndarray:
        return np.stack([run.mask(shape[1:]) for run in self.runs])
