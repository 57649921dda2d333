"""Exceptions that the CLI turns into one-line messages and exit code 2.

Library code raises these with a message that already names the key, the bad value
and what is allowed; nothing here prints.
"""

from pathlib import Path


def install_hint(extra: str) -> str:
    """How to get an optional extra, where the user is: from a source checkout (the package
    sits next to lossbench's pyproject.toml) `pip install -e ".[plot]"`, naming the checkout
    when it is not the current directory; otherwise `pip install "lossbench[plot]"`."""
    root = Path(__file__).resolve().parent.parent
    try:
        checkout = 'name = "lossbench"' in (root / "pyproject.toml").read_text()
    except OSError:
        checkout = False
    if not checkout:
        return f'pip install "lossbench[{extra}]"'
    here = root == Path.cwd().resolve()
    return f'pip install -e "{"." if here else root}[{extra}]"' + ("" if here else " (your lossbench checkout)")


class LossbenchError(Exception):
    """Base class for every error lossbench reports to the user as one line."""


class ConfigError(LossbenchError, ValueError):
    """A name, hyperparameter or value that is not allowed."""


class DataError(LossbenchError):
    """A dataset that cannot be found, downloaded, verified or parsed."""


class ClusterLost(LossbenchError):
    """The Dask scheduler went away mid-sweep: finished runs are kept (exit code 1)."""


class DiskFull(LossbenchError):
    """The disk holding a results directory filled up mid-sweep: finished runs are kept (exit code 1)."""
