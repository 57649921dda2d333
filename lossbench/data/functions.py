"""Test functions as datasets: `dataset: rosenbrock` is a problem without data.

The function is the landscape, the run's parameters are the point (engine/functions.py).
A problem has one row, for the training loop's sake: each epoch is one step, and its
history records the point after it (x0, x1, ...). Options: `start` (the function's usual
starting point unless set) and `noise` (std of Gaussian noise on each gradient
coordinate, as DeepOBS's noisy two_d problems); the quadratic's `dims` and `condition`.
"""

from __future__ import annotations

from lossbench.data.base import DATASETS, Raw
from lossbench.engine.functions import FUNCTIONS, Quadratic, TestFunction
from lossbench.registry import Int, Optional, Real, Seq, fail

START, NOISE = Optional(Seq(Real())), Real(ge=0)


def _problem(function: TestFunction, start, noise: float) -> Raw:
    if start is not None:
        if len(start) != function.dims:
            raise fail("dataset.start", f"must be a point of {function.dims} numbers", start)
        function.start = tuple(float(v) for v in start)
    function.noise = float(noise)
    return Raw("function", function.dims, None, None, None, None, function=function)


def _register(name: str) -> None:
    cls = FUNCTIONS[name]

    def loader(seed, *, start=None, noise=0.0) -> Raw:
        return _problem(cls(), start, noise)

    loader.__doc__ = cls.__doc__
    DATASETS.register(name, start=START, noise=NOISE)(loader)


for _name in ("rosenbrock", "beale", "branin", "saddle"):
    _register(_name)


@DATASETS.register("quadratic", dims=Int(ge=1, le=10_000), condition=Real(ge=1), start=START, noise=NOISE)
def quadratic(seed, *, dims=2, condition=10.0, start=None, noise=0.0) -> Raw:
    """0.5 x^T A x, A's eigenvalues log-spaced from 1 to condition in a rotation drawn from the seed."""
    return _problem(Quadratic(dims, condition, seed), start, noise)
