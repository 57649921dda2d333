"""Central finite differences, shared by the loss and layer contract tests."""

import numpy as np


def numeric_grad(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """d f / d x by central differences; f takes no arguments and reads x."""
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        up = f()
        flat[i] = old - h
        down = f()
        flat[i] = old
        gflat[i] = (up - down) / (2 * h)
    return g


def assert_close_grad(analytic: np.ndarray, numeric: np.ndarray, rtol: float = 1e-5, atol: float = 1e-8):
    err = np.abs(analytic - numeric)
    scale = np.maximum(np.abs(numeric), np.abs(analytic))
    bad = err > atol + rtol * scale
    assert not bad.any(), f"max abs err {err.max():.3g} at {np.argwhere(bad)[:3].tolist()}"
