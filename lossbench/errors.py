"""Exceptions that the CLI turns into one-line messages and exit code 2.

Library code raises these with a message that already names the key, the bad value
and what is allowed; nothing here prints.
"""


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
