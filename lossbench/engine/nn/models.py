"""Models built from config: a stack of layers over one contiguous parameter buffer."""

from __future__ import annotations

import copy
import os

import numpy as np

from lossbench.engine.nn import layers as _layers
from lossbench.engine.nn.layers import ACTIVATIONS, INITS, LAYERS, Dropout, Layer, Linear, StackedDropout, Tensor
from lossbench.errors import ConfigError
from lossbench.registry import Choice, Int, Real, Registry, Seq, fail

# Context: the data's feature count and (for images) its (channels, height, width), the
# number of outputs the loss needs, and the seed; configs set none of them.
MODELS = Registry("model", context=("n_in", "n_out", "seed", "image_shape"))
# layers that take a leading run axis (K, B, F): dense layers and elementwise ones
STACKABLE = (_layers.Linear, _layers.ReLU, _layers.LeakyReLU, _layers.Tanh, _layers.Sigmoid, _layers.GELU,
             _layers.Dropout, StackedDropout)


class Sequential:
    """Layers applied in order. All parameters live in `self.params` (one float32
    vector) and their gradients in `self.grads`; layers hold views into both.

    Making one only lays out the layers and counts their parameters (`n_params`), so a
    config's model can be sized without allocating it; `allocate()` makes the buffers
    and initializes them (nn.build does both).
    """

    def __init__(self, layers: list[Layer], rng: np.random.Generator, init: str = "he"):
        self.layers, self.rng, self.init = layers, rng, init
        self.n_params = sum(int(np.prod(s)) for layer in layers for s in layer.shapes)
        self.eval_batch = 4096  # examples per evaluation chunk; image models set fewer
        self._backprops: list = []

    def allocate(self) -> Sequential:
        check_fits(self.n_params)
        self.bind(np.zeros(self.n_params, dtype=np.float32))
        for layer in self.layers:
            layer.init(self.rng, self.init)
        return self

    def bind(self, params: np.ndarray) -> None:
        """Make `params` (flat, the model's size; or (K, size) for K stacked runs) the
        parameter buffer, with a zeroed gradient buffer of its dtype, and point every
        layer's views into both (shaped (K, *shape) when stacked)."""
        self.params, self.grads = params, np.zeros_like(params)
        lead, offset = params.shape[:-1], 0
        for layer in self.layers:
            views, gviews = [], []
            for shape in layer.shapes:
                n = int(np.prod(shape))
                views.append(self.params[..., offset : offset + n].reshape(lead + tuple(shape)))
                gviews.append(self.grads[..., offset : offset + n].reshape(lead + tuple(shape)))
                offset += n
            layer.bind(views, gviews)

    @property
    def layout(self) -> list[Tensor]:
        """The tensors of the flat parameter buffer in order: each layer's weight then bias
        ("2.Linear.weight"), for optimizers that work per tensor and parameter groups."""
        owners = [i for i, layer in enumerate(self.layers) if layer.shapes]
        return [Tensor(f"{i}.{type(layer).__name__}.{('weight', 'bias')[j] if j < 2 else j}", tuple(shape),
                       j < len(layer.transposed) and layer.transposed[j], owners.index(i), i == owners[-1])
                for i, layer in enumerate(self.layers) for j, shape in enumerate(layer.shapes)]

    @property
    def stackable(self) -> bool:
        """Whether K runs of this architecture can train as one (dense layers and
        activations take a leading run axis; image layers do not)."""
        return all(type(layer) in STACKABLE for layer in self.layers)

    @classmethod
    def stack(cls, models: list[Sequential]) -> Sequential | OneRun:
        """K initialized models of one architecture as one model over (K, B, F) batches.

        Parameters are (K, P), row k model k's; gradients likewise; dropout draws each run's
        mask from that run's generator. Row k of every output and gradient is what model k
        computes alone (one GEMM per run, the same operations in the same order). A model
        whose layers take no run axis (images) can only be "stacked" alone: OneRun.
        """
        first = models[0]
        if not first.stackable:
            if len(models) > 1:
                raise ValueError("image models train one run at a time")
            return OneRun(first)
        layers = [StackedDropout([m.layers[j] for m in models]) if isinstance(layer, Dropout) else copy.copy(layer)
                  for j, layer in enumerate(first.layers)]
        net = cls(layers, first.rng, first.init)
        net.eval_batch = first.eval_batch
        net.bind(np.stack([m.params for m in models]))
        return net

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        backprops = []
        for layer in self.layers:
            x, backprop = layer.forward(x, train)
            backprops.append(backprop)
        self._backprops = backprops
        return x

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """Gradients of the last forward pass land in `self.grads`; returns `self.grads`.

        `dout` may be overwritten. Backprop stops at the first layer with parameters, which
        skips its input gradient: nobody needs d loss / d data (nor the gradient of layers
        without parameters in front, such as a CNN's reshape to images, where computing it
        cost a 2c2d step a fifth of its time).
        """
        first = next((i for i, layer in enumerate(self.layers) if layer.shapes), 0)
        for i in range(len(self._backprops) - 1, first - 1, -1):
            dout = self._backprops[i](dout, need_dx=i > first)
        return self.grads

    def predict(self, x: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Evaluation-mode outputs, in chunks so a large split never holds every
        hidden activation at once. Stacked: x (N, F) gives (K, N, outputs)."""
        batch_size = batch_size or self.eval_batch
        stacked = self.params.ndim == 2
        outs = [self.forward(x[None, i : i + batch_size] if stacked else x[i : i + batch_size])
                for i in range(0, len(x), batch_size)]
        self._backprops = []
        if not outs:
            return np.zeros((len(self.params), 0, 0) if stacked else (0, 0), np.float32)
        return np.concatenate(outs, axis=-2)


class OneRun:
    """A model without a run axis seen as a stack of one: (1, B, ...) in, (1, B, out) out,
    parameters and gradients (1, P) views of its flat buffers."""

    def __init__(self, net: Sequential):
        self.net, self.n_params = net, net.n_params
        self.params, self.grads = net.params[None], net.grads[None]

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        return self.net.forward(x[0], train)[None]

    def backward(self, dout: np.ndarray) -> np.ndarray:
        self.net.backward(dout[0])
        return self.grads

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.net.predict(x)[None]


def physical_memory() -> int | None:
    """Bytes of RAM on this machine, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(n_params: int, got: str | None = None, optimizer_copies: int = 0, optimizer: str = "") -> None:
    """Refuse a model whose float32 weights, gradients and (given its count of
    parameter-sized arrays) optimizer buffers exceed the machine's memory."""
    have = physical_memory()
    need = n_params * (2 + optimizer_copies) * np.dtype(np.float32).itemsize
    if have is not None and need > have:
        what = f"weights, gradients and {optimizer}'s buffers" if optimizer_copies else "weights and gradients"
        raise ConfigError(f"model: does not fit in memory: {n_params:,} parameters need {_size(need)} for {what}, "
                          f"this machine has {_size(have)}, got {got or f'{n_params:,} parameters'}")


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


INIT = Choice(*INITS)


@MODELS.register("linear", init=INIT)
def linear(n_in: int, n_out: int, seed: int = 0, image_shape: tuple | None = None, init: str = "torch") -> Sequential:
    """One affine layer: softmax, logistic or linear regression, depending on the loss."""
    return Sequential([Linear(n_in, n_out)], np.random.default_rng(seed), init)


@MODELS.register("mlp", hidden=Seq(Int(ge=1), scalar=True), activation=Choice(*ACTIVATIONS),
                 dropout=Real(ge=0, lt=1), init=INIT)
def mlp(
    n_in: int,
    n_out: int,
    seed: int = 0,
    image_shape: tuple | None = None,  # an MLP sees the pixels as one vector
    hidden: list[int] = (128,),
    activation: str = "relu",
    dropout: float = 0.0,
    init: str = "torch",
) -> Sequential:
    """Multilayer perceptron: Linear -> activation (-> dropout) per hidden size, then a linear output."""
    if isinstance(hidden, int):
        hidden = [hidden]
    init_rng, dropout_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    layers: list[Layer] = []
    width = n_in
    for h in hidden:
        layers += [Linear(width, h), LAYERS.build(activation)]
        if dropout > 0:
            layers.append(Dropout(dropout, dropout_rng))
        width = h
    layers.append(Linear(width, n_out))
    return Sequential(layers, init_rng, init)


def plan(name: str, n_in: int, n_out: int, seed: int = 0, image_shape: tuple | None = None, /,
         **options) -> Sequential:
    """The model laid out but not allocated: for its `n_params`."""
    if image_shape is None and getattr(MODELS.get(name), "needs_image", False):
        raise fail("model.name", "must be linear or mlp on tabular data (convolutional models need an image "
                                 "dataset: mnist, fashion_mnist)", name)
    return MODELS.build(name, n_in, n_out, seed, image_shape, **options)


def build(name: str, n_in: int, n_out: int, seed: int = 0, image_shape: tuple | None = None, /,
          **options) -> Sequential:
    """A model by its registered name, allocated and initialized from `seed`. `image_shape`
    (channels, height, width) tells image models how the `n_in` features are laid out."""
    return plan(name, n_in, n_out, seed, image_shape, **options).allocate()
