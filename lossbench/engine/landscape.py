"""The loss around trained parameters: lines, planes, PCA paths, sharpness.

Every point is a flat parameter vector of one architecture (`Sequential.params`'s
layout). `Surface` evaluates the loss of a model on a fixed set of examples at many such
points, K at a time as one stacked model (`Sequential.stack`), in chunks of examples,
in evaluation mode (no dropout) as the history's validation figures are measured.

- `line`: theta(a) = (1 - a) theta_0 + a theta_1 (Goodfellow et al. 2015, "Qualitatively
  characterizing neural network optimization problems").
- `plane`: theta + a d1 + b d2 with random directions, filter-normalized (Li et al. 2018,
  "Visualizing the Loss Landscape of Neural Nets"): each output neuron's incoming weights
  (a column of Linear's (n_in, n_out) weight; an output channel of a convolution) scaled
  to the norm of the same weights of theta; biases and batch-norm parameters zero.
- `pca_directions`: the first two principal directions of (epoch params - final params).
- `top_eigenvalue`: the largest-magnitude Hessian eigenvalue by power iteration on
  central finite-difference Hessian-vector products, in float64.
"""

from __future__ import annotations

import math

import numpy as np

from lossbench.engine import nn


class Surface:
    """The mean loss of `net`'s architecture on (x, targets) at parameter points.

    `loss` is a lossbench loss; `targets` encoded for it (train.encode_targets). `points`
    is (M, P); evaluated `k` at a time on `chunk` examples at a time."""

    def __init__(self, net: nn.Sequential, loss, x: np.ndarray, targets: np.ndarray, k: int = 8,
                 chunk: int = 2048):
        self.net, self.loss, self.x, self.t, self.chunk = net, loss, x, targets, chunk
        self.k = k if net.stackable else 1
        self.stacked = nn.Sequential.stack([net] * self.k) if net.stackable else None

    def __call__(self, points: np.ndarray) -> np.ndarray:
        points = np.atleast_2d(points)
        out = np.empty(len(points))
        for lo in range(0, len(points), self.k):
            block = points[lo:lo + self.k]
            out[lo:lo + len(block)] = self._block(block)[:len(block)]
        return out

    def _block(self, block: np.ndarray) -> np.ndarray:
        n = len(self.x)
        total = np.zeros(self.k)
        if self.stacked is None:  # image models: one point at a time
            self.net.params[...] = block[0]
        else:
            self.stacked.params[:len(block)] = block  # rows past the block keep old points: ignored
        net = self.stacked or self.net
        for lo in range(0, n, self.chunk):
            xb, tb = self.x[lo:lo + self.chunk], self.t[lo:lo + self.chunk]
            if self.stacked is None:
                values = np.array([self.loss.value(net.forward(xb), tb)])
            else:
                values = self.loss.value(net.forward(xb[None]), np.broadcast_to(tb, (self.k, *tb.shape)))
            total += np.asarray(values, np.float64) * len(xb)  # chunks weighted by their size
        net._backprops = []
        return total / n

    def gradient(self, theta: np.ndarray) -> np.ndarray:
        """d mean loss / d parameters at `theta`, in theta's dtype (float64 for the Hessian)."""
        net = self.net
        saved = net.params
        net.bind(theta.copy())
        g = np.zeros_like(theta)
        n = len(self.x)
        try:
            for lo in range(0, n, self.chunk):
                xb = self.x[lo:lo + self.chunk].astype(theta.dtype)
                out = net.forward(xb, train=False)
                _, dout = self.loss.value_and_grad(out, self.t[lo:lo + self.chunk])
                g += net.backward(dout.astype(theta.dtype)) * (len(xb) / n)
        finally:
            net._backprops = []
            net.bind(saved)
        return g


def filter_normalize(direction: np.ndarray, theta: np.ndarray, layout) -> np.ndarray:
    """`direction` with each filter rescaled to the norm of theta's same filter (Li et al.
    2018): a filter is one output unit's weights, along torch's first axis (the last of
    Linear's transposed weight, the first of a convolution's); 1-D tensors (biases,
    batch-norm scales and shifts) are zeroed. Returns a new array."""
    d = np.array(direction, np.float64)
    offset = 0
    for t in layout:
        size = math.prod(t.shape)
        dv = d[offset:offset + size].reshape(t.shape)  # a view: scaled in place
        tv = theta[offset:offset + size].reshape(t.shape).astype(np.float64)
        if len(t.shape) < 2:
            dv[...] = 0.0
        else:
            axis = len(t.shape) - 1 if t.transposed else 0  # the output units' axis
            others = tuple(i for i in range(len(t.shape)) if i != axis)
            dn = np.sqrt((dv ** 2).sum(axis=others, keepdims=True))
            tn = np.sqrt((tv ** 2).sum(axis=others, keepdims=True))
            dv *= tn / np.where(dn > 0, dn, 1.0)
        offset += size
    return d


def random_directions(theta: np.ndarray, layout, seed: int = 0, n: int = 2) -> np.ndarray:
    """`n` filter-normalized Gaussian directions around `theta`: (n, P) float64."""
    rng = np.random.default_rng(seed)
    return np.stack([filter_normalize(rng.standard_normal(theta.shape), theta, layout) for _ in range(n)])


def line(surface: Surface, start: np.ndarray, end: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """The loss at (1 - a) start + a end for each a of `alphas`."""
    start, end = start.astype(np.float64), end.astype(np.float64)
    return surface(np.stack([start + a * (end - start) for a in alphas]).astype(np.float32))


def plane(surface: Surface, center: np.ndarray, d1: np.ndarray, d2: np.ndarray, a: np.ndarray,
          b: np.ndarray, rows: int = 64) -> np.ndarray:
    """The loss at center + a_i d1 + b_j d2: (len(b), len(a)), rows b, columns a (as contour
    plots take them). Points are made `rows` at a time, never all at once."""
    aa, bb = np.meshgrid(a, b)
    coords = np.stack([aa.ravel(), bb.ravel()], axis=1)
    out = np.empty(len(coords))
    c = center.astype(np.float64)
    for lo in range(0, len(coords), rows):
        ab = coords[lo:lo + rows]
        out[lo:lo + len(ab)] = surface((c + ab[:, :1] * d1 + ab[:, 1:] * d2).astype(np.float32))
    return out.reshape(aa.shape)


def pca_directions(path: np.ndarray, final: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(two unit directions (2, P), the path's coordinates (len(path), 2), their explained
    variance ratios (2,)) of the principal directions of path - final."""
    m = path.astype(np.float64) - final.astype(np.float64)
    _, s, vt = np.linalg.svd(m, full_matrices=False)
    var = s ** 2 / max(float((s ** 2).sum()), np.finfo(float).tiny)
    dirs = vt[:2] if len(vt) >= 2 else np.vstack([vt, np.zeros_like(vt)])
    return dirs, m @ dirs.T, np.pad(var[:2], (0, max(0, 2 - len(var))))


def top_eigenvalue(grad, theta: np.ndarray, seed: int = 0, iters: int = 100, tol: float = 1e-3,
                   eps: float | None = None) -> tuple[float, int]:
    """(largest-magnitude eigenvalue of the Hessian at theta, iterations used) by power
    iteration: Hv ~ (g(theta + eps v) - g(theta - eps v)) / (2 eps) with v of unit norm,
    stopped when the estimate moves by less than `tol` relative. `grad(theta)` gives the
    gradient; theta is used in float64 so the difference is not float32's rounding."""
    theta = theta.astype(np.float64)
    eps = eps if eps is not None else 1e-3 * max(1.0, float(np.linalg.norm(theta))) / math.sqrt(theta.size)
    v = np.random.default_rng(seed).standard_normal(theta.shape)
    v /= np.linalg.norm(v)
    lam = math.nan
    for i in range(1, iters + 1):
        hv = (grad(theta + eps * v) - grad(theta - eps * v)) / (2 * eps)
        new = float(v @ hv)
        norm = float(np.linalg.norm(hv))
        if norm == 0 or not math.isfinite(norm):
            return new, i
        v = hv / norm
        if math.isfinite(lam) and abs(new - lam) <= tol * abs(new):
            return new, i
        lam = new
    return lam, iters
