"""Models built from config: a stack of layers over one contiguous parameter buffer."""

from __future__ import annotations

import numpy as np

from lossbench.errors import ConfigError
from lossbench.registry import Registry
from lossbench.engine.nn.layers import ACTIVATIONS, LAYERS, Dropout, Layer, Linear

MODELS = Registry("model")


class Sequential:
    """Layers applied in order. All parameters live in `self.params` (one float32
    vector) and their gradients in `self.grads`; layers hold views into both."""

    def __init__(self, layers: list[Layer], rng: np.random.Generator, init: str = "he"):
        self.layers = layers
        n = sum(int(np.prod(s)) for layer in layers for s in layer.shapes)
        self.bind(np.zeros(n, dtype=np.float32))
        for layer in layers:
            layer.init(rng, init)
        self._backprops: list = []

    def bind(self, params: np.ndarray) -> None:
        """Make `params` (flat, the model's size) the parameter buffer, with a zeroed
        gradient buffer of its dtype, and point every layer's views into both."""
        self.params, self.grads = params, np.zeros_like(params)
        offset = 0
        for layer in self.layers:
            views, gviews = [], []
            for shape in layer.shapes:
                n = int(np.prod(shape))
                views.append(self.params[offset : offset + n].reshape(shape))
                gviews.append(self.grads[offset : offset + n].reshape(shape))
                offset += n
            layer.bind(views, gviews)

    @property
    def n_params(self) -> int:
        return self.params.size

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        backprops = []
        for layer in self.layers:
            x, backprop = layer.forward(x, train)
            backprops.append(backprop)
        self._backprops = backprops
        return x

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """Gradients of the last forward pass land in `self.grads`; returns `self.grads`.

        The first layer skips its input gradient: nobody needs d loss / d data.
        """
        for i in range(len(self._backprops) - 1, -1, -1):
            dout = self._backprops[i](dout, need_dx=i > 0)
        return self.grads

    def predict(self, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Evaluation-mode outputs, in chunks so a large split never holds every
        hidden activation at once."""
        outs = [self.forward(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        self._backprops = []
        return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)


def _activation(name: str) -> Layer:
    if name not in ACTIVATIONS:
        raise ConfigError(f"model.activation: unknown activation {name!r}; supported activations are {sorted(ACTIVATIONS)}")
    return LAYERS.build(name)


@MODELS.register("linear")
def linear(n_in: int, n_out: int, seed: int = 0, init: str = "xavier") -> Sequential:
    """One affine layer: softmax, logistic or linear regression, depending on the loss."""
    return Sequential([Linear(n_in, n_out)], np.random.default_rng(seed), init)


@MODELS.register("mlp")
def mlp(
    n_in: int,
    n_out: int,
    seed: int = 0,
    hidden: list[int] = (128,),
    activation: str = "relu",
    dropout: float = 0.0,
    init: str = "he",
) -> Sequential:
    """Linear -> activation (-> dropout) for each hidden size, then a linear output."""
    if isinstance(hidden, int):
        hidden = [hidden]
    for h in hidden:
        if not isinstance(h, int) or isinstance(h, bool) or h < 1:
            raise ConfigError(f"model.hidden: sizes must be integers >= 1, got {h!r}")
    if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout < 1:
        raise ConfigError(f"model.dropout: must be in [0, 1), got {dropout!r}")
    init_rng, dropout_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    layers: list[Layer] = []
    width = n_in
    for h in hidden:
        layers += [Linear(width, h), _activation(activation)]
        if dropout > 0:
            layers.append(Dropout(dropout, dropout_rng))
        width = h
    layers.append(Linear(width, n_out))
    return Sequential(layers, init_rng, init)


def build(name: str, n_in: int, n_out: int, seed: int = 0, **options) -> Sequential:
    return MODELS.build(name, n_in, n_out, seed=seed, **options)
