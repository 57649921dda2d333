"""Test functions as problems: the parameters are a point, the loss is the function.

The mountain of the course material: a run starts at a point, follows the gradient, and
the learning rate decides whether it steps over the valley. Each function gives its value
and gradient (float64 math, float32 like every loss), its minima (for the distance
metric and the plots), its usual starting point (DeepOBS's for the 2-D ones) and the
box its pictures show. `Point` is the model (its parameters are the point; optional
Gaussian gradient noise, as DeepOBS's noisy two_d problems) and `FunctionLoss` the loss,
so a function runs through the training loop, sweeps and comparisons unchanged.
"""

from __future__ import annotations

import math

import numpy as np

from lossbench.engine.losses import Loss
from lossbench.engine.nn.layers import Layer


class TestFunction:
    """f: R^d -> R with its gradient. Subclasses set `dims`, `start`, `minima` (m x d; empty:
    unbounded below), `bounds` ((lo, hi) per axis of the 2-D pictures) and `f_and_grad`."""

    __test__ = False  # not a pytest class
    name = ""
    dims = 2
    start: tuple = ()
    minima = np.zeros((0, 2))
    bounds: tuple = ((-2.0, 2.0), (-2.0, 2.0))

    def f_and_grad(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """x (..., d) float64 -> f (...,), grad (..., d)."""
        raise NotImplementedError

    def value(self, x) -> np.ndarray:
        return self.f_and_grad(np.asarray(x, np.float64))[0]

    def distance(self, x) -> float:
        """Euclidean distance to the nearest minimum (NaN if there is none)."""
        if not len(self.minima):
            return math.nan
        return float(np.min(np.linalg.norm(self.minima - np.asarray(x, np.float64), axis=1)))


class Rosenbrock(TestFunction):
    """(1 - x)^2 + 100 (y - x^2)^2: a curved, flat-bottomed valley; minimum 0 at (1, 1)."""

    name, start, minima, bounds = "rosenbrock", (-0.5, 1.5), np.array([[1.0, 1.0]]), ((-2.0, 2.0), (-1.0, 3.0))

    def f_and_grad(self, p):
        x, y = p[..., 0], p[..., 1]
        f = (1 - x) ** 2 + 100 * (y - x * x) ** 2
        return f, np.stack([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)], axis=-1)


class Beale(TestFunction):
    """(1.5 - x + xy)^2 + (2.25 - x + xy^2)^2 + (2.625 - x + xy^3)^2: minimum 0 at (3, 0.5)."""

    name, start, minima, bounds = "beale", (-4.5, 4.5), np.array([[3.0, 0.5]]), ((-4.5, 4.5), (-4.5, 4.5))

    def f_and_grad(self, p):
        x, y = p[..., 0], p[..., 1]
        f, gx, gy = 0.0, 0.0, 0.0
        for k, c in enumerate((1.5, 2.25, 2.625), start=1):
            r = c - x + x * y**k
            f = f + r * r
            gx = gx + 2 * r * (y**k - 1)
            gy = gy + 2 * r * k * x * y ** (k - 1)
        return f, np.stack([gx, gy], axis=-1)


class Branin(TestFunction):
    """a (y - b x^2 + c x - r)^2 + s (1 - t) cos x + s: three minima of 0.397887."""

    name, start, bounds = "branin", (2.5, 12.5), ((-5.0, 10.0), (0.0, 15.0))
    minima = np.array([[-math.pi, 12.275], [math.pi, 2.275], [9.42478, 2.475]])
    a, b, c, r, s, t = 1.0, 5.1 / (4 * math.pi**2), 5 / math.pi, 6.0, 10.0, 1 / (8 * math.pi)

    def f_and_grad(self, p):
        x, y = p[..., 0], p[..., 1]
        u = y - self.b * x * x + self.c * x - self.r
        f = self.a * u * u + self.s * (1 - self.t) * np.cos(x) + self.s
        gx = 2 * self.a * u * (-2 * self.b * x + self.c) - self.s * (1 - self.t) * np.sin(x)
        return f, np.stack([gx, 2 * self.a * u], axis=-1)


class Saddle(TestFunction):
    """x^2 - y^2: a saddle at the origin, unbounded below along y (no minimum)."""

    name, start, bounds = "saddle", (-1.0, 1e-3), ((-1.5, 1.5), (-1.5, 1.5))

    def f_and_grad(self, p):
        x, y = p[..., 0], p[..., 1]
        return x * x - y * y, np.stack([2 * x, -2 * y], axis=-1)


class Quadratic(TestFunction):
    """0.5 x^T A x with A's eigenvalues log-spaced from 1 to `condition`, in a random
    (seeded) rotation: the ill-conditioned valley momentum was made for; minimum 0 at 0."""

    name = "quadratic"

    def __init__(self, dims: int = 2, condition: float = 10.0, seed: int = 0):
        self.dims, self.condition = dims, condition
        rng = np.random.default_rng(seed)
        q, _ = np.linalg.qr(rng.standard_normal((dims, dims)))
        self.eigenvalues = np.logspace(0, math.log10(condition), dims)
        self.A = (q * self.eigenvalues) @ q.T
        self.start = tuple([1.0] * dims)
        self.minima = np.zeros((1, dims))
        self.bounds = ((-1.5, 1.5), (-1.5, 1.5))

    def f_and_grad(self, p):
        g = p @ self.A  # A is symmetric
        return 0.5 * np.sum(g * p, axis=-1), g


FUNCTIONS = {f.name: f for f in (Rosenbrock, Beale, Branin, Saddle, Quadratic)}


class FunctionLoss(Loss):
    """The function's value at the model's output (the point, repeated over the batch)."""

    def __init__(self, function: TestFunction):
        self.function = function

    def value_and_grad(self, pred, target):
        f, g = self.function.f_and_grad(pred.astype(np.float64))
        per_row = 1.0 / pred.shape[-2]  # the batch's mean: each row carries its share
        value = np.mean(f, axis=-1)
        return (float(value) if value.ndim == 0 else value), (g * per_row).astype(np.float32)


class Point(Layer):
    """The model of a test function: its parameters are the point, repeated over the batch.

    Its gradient is the sum over the batch's rows (each a share of the function's), plus
    Gaussian noise of std `noise` per coordinate when training, drawn from the run's seed.
    """

    def __init__(self, dims: int, start, noise: float, rng: np.random.Generator):
        self.shapes, self.start, self.noise, self.rng = ((dims,),), np.asarray(start, np.float32), noise, rng

    def init(self, rng, scheme):
        self.params[0][...] = self.start

    def forward(self, x, train):
        (p,), (g,) = self.params, self.grads
        y = np.broadcast_to(p[..., None, :], x.shape[:-1] + p.shape[-1:]).copy()

        def backprop(dy, need_dx=True):
            np.sum(dy, axis=-2, out=g)
            if train and self.noise:
                np.add(g, (self.noise * self.rng.standard_normal(g.shape)).astype(np.float32), out=g)

        return y, backprop
