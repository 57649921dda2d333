"""lossbench: compare loss functions and optimizers on small pure-NumPy networks."""

__version__ = "0.1.0"
