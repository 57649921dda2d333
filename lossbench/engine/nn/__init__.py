"""Pure-NumPy layers and models."""

from lossbench.engine.nn.layers import ACTIVATIONS, LAYERS
from lossbench.engine.nn.models import MODELS, Sequential, build

__all__ = ["ACTIVATIONS", "LAYERS", "MODELS", "Sequential", "build"]
