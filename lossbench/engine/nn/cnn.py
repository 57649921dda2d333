"""Convolutional models: `cnn` and its presets (`2c2d` as DeepOBS, `lenet5`)."""

from __future__ import annotations

import numpy as np

from lossbench.engine.nn.layers import ACTIVATIONS, LAYERS, Dropout, Layer, Linear
from lossbench.engine.nn.models import INIT, MODELS, Sequential
from lossbench.registry import AnyOf, Bool, Choice, Int, Real, Seq, fail

PADDING = AnyOf(Int(ge=0), Choice("same", "valid"))
# Evaluation in chunks this size: 256 MNIST images hold ~26 MB of 2c2d activations, where
# the MLPs' 4096 would hold 400 MB.
EVAL_BATCH = 256


class ToImage(Layer):
    """Lay the dataset's feature vectors out as images, (N, C*H*W) -> (N, C, H, W)."""

    def __init__(self, shape: tuple[int, int, int]):
        self.shape = tuple(shape)

    def forward(self, x, train):
        n = len(x)

        def backprop(dy, need_dx=True):
            return dy.reshape(n, -1) if need_dx else None

        return x.reshape(n, *self.shape), backprop


def _side(size: int, kernel: int, padding) -> int:
    """Height or width after a stride-1 convolution."""
    if padding == "same":
        return size
    pad = 0 if padding == "valid" else padding
    return size + 2 * pad - kernel + 1


@MODELS.register("cnn", channels=Seq(Int(ge=1), min_length=1), kernel_size=Int(ge=1),
                 padding=Seq(PADDING, scalar=True), pool=Choice("max", "avg", "none"),
                 hidden=Seq(Int(ge=1), scalar=True), activation=Choice(*ACTIVATIONS), dropout=Real(ge=0, lt=1),
                 batch_norm=Bool(), init=INIT)
def cnn(n_in: int, n_out: int, seed: int = 0, image_shape: tuple | None = None, channels: list[int] = (32, 64),
        kernel_size: int = 5, padding="same", pool: str = "max", hidden: list[int] = (1024,),
        activation: str = "relu", dropout: float = 0.0, batch_norm: bool = False, init: str = "torch") -> Sequential:
    """Convolutional network: per channel count conv (-> batch norm) -> activation -> 2x2 pool, then dense layers.

    padding: one value for every convolution, or a list with one per convolution
    hidden: the dense layers after flattening, each followed by the activation (and dropout)
    """
    pads = padding if isinstance(padding, (list, tuple)) else [padding] * len(channels)
    if len(pads) != len(channels):
        raise fail("model.padding", f"must be one value or one per convolution ({len(channels)})", padding)
    init_rng, dropout_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    c, h, w = image_shape
    layers: list[Layer] = [ToImage(image_shape)]
    for out, pad in zip(channels, pads):
        layers.append(LAYERS.build("conv2d", in_channels=c, out_channels=out, kernel_size=kernel_size, padding=pad))
        if batch_norm:
            layers.append(LAYERS.build("batch_norm", num_features=out))
        act = LAYERS.build(activation)
        c, h, w = out, _side(h, kernel_size, pad), _side(w, kernel_size, pad)
        if pool != "none":
            pooling = LAYERS.build(f"{pool}_pool2d", kernel_size=2)
            # max-pool then ReLU is ReLU then max-pool, values and gradients (ReLU keeps the
            # order of positive values and blocks the gradient of windows <= 0), on a quarter
            # of the elements; not for other activations, whose rounding can tie distinct inputs
            layers += [pooling, act] if (pool, activation) == ("max", "relu") else [act, pooling]
            h, w = h // 2, w // 2
        else:
            layers.append(act)
        if h < 1 or w < 1:
            raise fail("model.channels", f"leave no pixels of the {image_shape[1]}x{image_shape[2]} images after "
                                         f"{len(layers)} layers (fewer convolutions, or padding: same)", channels)
    layers.append(LAYERS.build("flatten"))
    width = c * h * w
    for size in [hidden] if isinstance(hidden, int) else hidden:
        layers += [Linear(width, size), LAYERS.build(activation)]
        if dropout > 0:
            layers.append(Dropout(dropout, dropout_rng))
        width = size
    layers.append(Linear(width, n_out))
    net = Sequential(layers, init_rng, init)
    net.eval_batch = EVAL_BATCH
    return net


cnn.needs_image = True  # nn.plan refuses it (and its presets) on tabular data


MODELS.alias("2c2d", "cnn", "DeepOBS's 2c2d: conv 5x5 32 same, max-pool 2, conv 5x5 64 same, max-pool 2, dense 1024, "
             "output.", channels=[32, 64], kernel_size=5, padding="same", pool="max", hidden=[1024])
MODELS.alias("lenet5", "cnn", "LeNet-5 with ReLU and max-pooling: conv 5x5 6 (padded), conv 5x5 16, dense 120 and 84.",
             channels=[6, 16], kernel_size=5, padding=[2, 0], pool="max", hidden=[120, 84])
