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


def test_adding_a_loss_as_the_readme_shows_is_checked_and_listed():
    """The README's new-loss example, registered in a fresh interpreter (so the suite's
    registries stay as shipped): its constraint is enforced, and `list` shows it."""
    import subprocess
    import sys

    block = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[1]
    script = "\n".join([
        "import numpy as np",
        "from lossbench.engine.losses import LOSSES, Loss",
        "from lossbench.registry import Real",
        block,
        "from lossbench import api, losses",
        "from lossbench.errors import ConfigError",
        "loss = losses.build('expectile', tau=0.9)",
        "print(round(loss.value(np.array([[1.0]], np.float32), np.array([[3.0]], np.float32)), 6))",
        "try:\n    losses.build('expectile', tau=1.5)\nexcept ConfigError as e:\n    print(e)",
        "print([row[1:] for row in api.catalog('losses') if row[0] == 'expectile'])",
    ])
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == [
        "3.6",  # tau d^2 with d = 2
        "loss.tau: must be a number in (0, 1), got 1.5",
        "[({'tau': '0.5 (in (0, 1))'}, 'Asymmetric squared loss for the tau-th expectile.')]",
    ]
