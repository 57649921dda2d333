"""lossbench: compare loss functions and optimizers on small pure-NumPy networks.

The package is layered (see the README's layout): `engine/` (NumPy only), `data/`,
`sweep/` (configs, runs, the results store), `analysis/` (compare, report, plots), and
`cli.py`, `api.py`, `registry.py`, `errors.py` at the top.
"""

from __future__ import annotations

import importlib
import sys
from importlib.machinery import ModuleSpec

__version__ = "0.1.0"

# Engine modules by the short names users import them by (`from lossbench import losses`,
# `from lossbench.train import train`, as in the README). Each short name is the engine
# module itself, not a copy, so a registry extended through one name is the same registry.
ALIASES = {
    "losses": "lossbench.engine.losses",
    "optimizers": "lossbench.engine.optimizers",
    "schedules": "lossbench.engine.schedules",
    "metrics": "lossbench.engine.metrics",
    "nn": "lossbench.engine.nn",
    "train": "lossbench.engine.train",
}


class _AliasFinder:
    """Makes `import lossbench.losses` load (lazily) and return lossbench.engine.losses.
    (A meta path finder and loader by protocol; importlib.abc would cost 10 ms to import.)"""

    def find_spec(self, fullname, path=None, target=None):
        short = fullname.removeprefix(__name__ + ".")
        if fullname.startswith(__name__ + ".") and short in ALIASES:
            return ModuleSpec(fullname, self)
        return None

    def create_module(self, spec):
        return importlib.import_module(ALIASES[spec.name.removeprefix(__name__ + ".")])

    def exec_module(self, module):
        pass  # the engine module is already executed


if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
    sys.meta_path.append(_AliasFinder())


def __getattr__(name: str):
    if name in ALIASES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run(config, out=None, overrides=(), on_event=None, **options):
    """Run an experiment config (a YAML file's path, or a dict); see lossbench.api.run
    (options: workers, executor, address, fresh, retry_failed)."""
    from lossbench.api import run as _run

    return _run(config, out, overrides, on_event, **options)


def load(directory):
    """The tables of a results directory; see lossbench.api.load."""
    from lossbench.api import load as _load

    return _load(directory)
