"""Central finite differences and loss batches, shared by the contract and parity tests."""

import numpy as np


def numeric_grad(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """d f / d x by central differences; f takes no arguments and reads x."""
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        gflat[i] = numeric_partial(f, flat, i, h)
    return g


def numeric_partial(f, flat: np.ndarray, i: int, h: float = 1e-6) -> float:
    """d f / d flat[i] by central differences (flat: a 1-D view f reads through)."""
    old = flat[i]
    flat[i] = old + h
    up = f()
    flat[i] = old - h
    down = f()
    flat[i] = old
    return (up - down) / (2 * h)


def assert_close_grad(analytic: np.ndarray, numeric: np.ndarray, rtol: float = 1e-5, atol: float = 1e-8):
    err = np.abs(analytic - numeric)
    scale = np.maximum(np.abs(numeric), np.abs(analytic))
    bad = err > atol + rtol * scale
    assert not bad.any(), f"max abs err {err.max():.3g} at {np.argwhere(bad)[:3].tolist()}"


def loss_batch(loss, n: int = 6, c: int = 4, dtype=np.float64, seed: int = 0):
    """Predictions and the targets `loss` trains against (loss.target: index, binary or real;
    loss.outputs_per_target outputs per target column)."""
    rng = np.random.default_rng(seed)
    pred = rng.normal(size=(n, c * loss.outputs_per_target)).astype(dtype) * 2
    if loss.target == "index":
        target = rng.integers(0, c, size=n)
    elif loss.target == "binary":
        target = rng.integers(0, 2, size=(n, c)).astype(dtype)
    else:
        target = rng.normal(size=(n, c)).astype(dtype) * 2
    return pred, target
