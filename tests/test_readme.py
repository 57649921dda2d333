"""The README's Python example runs as written and prints what it says."""

import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).parent.parent / "README.md"


def test_python_example_runs_and_matches_its_comments():
    block = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[0]
    ns: dict = {}
    exec(compile(block, "README.md", "exec"), ns)
    assert ns["loss"].value(ns["pred"], ns["target"]) == pytest.approx(1.3125)
    np.testing.assert_allclose(ns["loss"].grad(ns["pred"], ns["target"]), [[-0.25, 0.5]])
    np.testing.assert_allclose(ns["w"], 0.999, rtol=1e-6)
    np.testing.assert_allclose(ns["b"], 0.001, rtol=1e-4)
    assert ns["res"].status == "ok"
    assert ns["res"].summary["test_accuracy"] == pytest.approx(0.995, abs=0.006)
