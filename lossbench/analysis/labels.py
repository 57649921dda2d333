"""How runs and grid cells are named in tables and progress lines (plain Python: the
progress display imports it during a sweep, before pandas is needed)."""

from __future__ import annotations


def cell_label(keys: list[str], values: tuple) -> str:
    """'sgd, lr=0.1, momentum=0.9': a `.name` key shows just its value; unset keys are left out."""
    parts = []
    for k, v in zip(keys, values):
        if v == "-":
            continue
        parts.append(_fmt(v) if k.endswith(".name") or "." not in k else f"{k.rsplit('.', 1)[-1]}={_fmt(v)}")
    return ", ".join(parts) or "all"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def run_label(cell: dict, seed: int) -> str:
    """What a run is, in the summary's words: 'adam, lr=0.001, seed 1'."""
    return f"{cell_label(list(cell), tuple(cell.values()))}, seed {seed}"


def clock(seconds: float) -> str:
    """'0:01:05'."""
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
