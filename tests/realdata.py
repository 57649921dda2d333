"""Where this machine keeps the real datasets, for the tests that skip without them."""

from __future__ import annotations

from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[1]
# the project's shared data (a sibling of the clone, or this machine's fixed place)
DATA = next((p for p in (Path("/work/shared/data"), _ROOT.parent / "shared" / "data") if (p / "mnist").is_dir()),
            _ROOT.parent / "shared" / "data")
MNIST = DATA / "mnist"
FASHION = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist

needs_mnist = pytest.mark.skipif(not (MNIST / "train-images-idx3-ubyte.gz").exists(), reason="real MNIST not available")
needs_fashion = pytest.mark.skipif(not (FASHION / "train-images-idx3-ubyte.gz").exists(),
                                   reason="Debian's dataset-fashion-mnist not installed")
