"""What can be named in a config: every registry's items with their hyperparameters."""

from __future__ import annotations

import inspect

KINDS = ("datasets", "models", "losses", "optimizers", "schedules")


def registries() -> dict:
    from lossbench import data
    from lossbench.engine import losses, nn, optimizers, schedules

    return {
        "datasets": data.DATASETS,
        "models": nn.MODELS,
        "losses": losses.LOSSES,
        "optimizers": optimizers.OPTIMIZERS,
        "schedules": schedules.SCHEDULES,
    }


def catalog(kind: str) -> list[tuple[str, dict, str]]:
    """(name, {hyperparameter: default or 'required'}, first docstring line) per item."""
    reg = registries()[kind]
    rows = []
    for name in reg.names():
        params = {k: ("required" if v is inspect.Parameter.empty else v) for k, v in reg.hyperparams(name).items()}
        doc = (inspect.getdoc(reg.get(name)) or "").split("\n")[0]
        rows.append((name, params, doc))
    return rows
