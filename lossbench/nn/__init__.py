"""Pure-NumPy layers and models."""

from .layers import ACTIVATIONS, LAYERS
from .models import MODELS, Sequential, build

__all__ = ["ACTIVATIONS", "LAYERS", "MODELS", "Sequential", "build"]
