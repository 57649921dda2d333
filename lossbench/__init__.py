"""lossbench: compare loss functions and optimizers on small pure-NumPy networks."""

__version__ = "0.1.0"


def run(config, out=None, overrides=(), on_event=None, **options):
    """Run an experiment config; see lossbench.api.run (options: workers, executor,
    address, fresh, retry_failed)."""
    from .api import run as _run

    return _run(config, out, overrides, on_event, **options)


def load(directory):
    """The tables of a results directory; see lossbench.api.load."""
    from .api import load as _load

    return _load(directory)
