"""Pure-NumPy layers and models."""

from lossbench.engine.nn import conv  # noqa: F401  (registers the image layers)
from lossbench.engine.nn.layers import ACTIVATIONS, LAYERS
from lossbench.engine.nn.models import MODELS, Sequential, build, check_fits, plan

__all__ = ["ACTIVATIONS", "LAYERS", "MODELS", "Sequential", "build", "check_fits", "plan"]
