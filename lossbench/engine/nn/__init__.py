"""Pure-NumPy layers and models."""

from lossbench.engine.nn import cnn, conv  # noqa: F401  (importing registers the image layers and models)
from lossbench.engine.nn.layers import ACTIVATIONS, LAYERS
from lossbench.engine.nn.models import MODELS, Sequential, build, check_fits, plan

__all__ = ["ACTIVATIONS", "LAYERS", "MODELS", "Sequential", "build", "check_fits", "plan"]
