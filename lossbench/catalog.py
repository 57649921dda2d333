"""What can be named in a config: every registry's items, their options and constraints."""

from __future__ import annotations

from lossbench import data
from lossbench.engine import losses, nn, optimizers, schedules

REGISTRIES = {
    "datasets": data.DATASETS,
    "models": nn.MODELS,
    "layers": nn.LAYERS,
    "losses": losses.LOSSES,
    "optimizers": optimizers.OPTIMIZERS,
    "schedules": schedules.SCHEDULES,
}
KINDS = tuple(REGISTRIES)


def catalog(kind: str) -> list[tuple[str, dict, str]]:
    """(name, {option: 'default (allowed range)'}, one-sentence summary) per item."""
    reg = REGISTRIES[kind]
    return [(name, reg.schema(name).describe(), reg.doc(name).split("\n")[0]) for name in reg.names()]
