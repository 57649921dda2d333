"""A run as data: its resolved config, seed and grid cell, and its stable id."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass


@dataclass
class RunSpec:
    run_id: str  # stable hash of `config` including the seed
    seed: int
    config: dict  # resolved: dataset, model, loss, optimizer, train — each a mapping
    cell: dict  # swept dotted key -> value for this run (the grid cell, seed excluded)
    budget: int | None = None  # train only this many epochs, then pause (a rung of `prune`); not in the id



def run_id(config: dict, seed: int) -> str:
    blob = json.dumps({**config, "seed": seed}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]
