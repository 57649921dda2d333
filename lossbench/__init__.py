"""lossbench: compare loss functions and optimizers on small pure-NumPy networks."""

__version__ = "0.1.0"


def run(config, out=None, overrides=(), on_event=None):
    """Run an experiment config; see lossbench.api.run."""
    from .api import run as _run

    return _run(config, out, overrides, on_event)
