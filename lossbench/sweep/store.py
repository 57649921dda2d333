"""Run records -> runs.csv / history.csv, and the per-cell aggregation over seeds."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from lossbench.errors import LossbenchError
from lossbench.engine.metrics import first_hit

RECORDS = "records"


def to_target(history: list[dict], target: dict | None) -> tuple[float, float]:
    """(epochs, seconds) until the target metric first reaches the target value; NaN if never."""
    hit = first_hit(history, target["metric"], target["value"]) if target else None
    return (hit["epoch"], hit["elapsed_s"]) if hit else (math.nan, math.nan)


def load_records(out: Path, run_ids: list[str]) -> list[dict]:
    recs = []
    for rid in run_ids:
        path = out / RECORDS / f"{rid}.json"
        if path.exists():
            recs.append(json.loads(path.read_text()))
    return recs


def runs_frame(records: list[dict], swept: list[str], metrics: tuple, target: dict | None) -> pd.DataFrame:
    rows = []
    for r in records:
        s = r.get("summary") or {}
        row = {"run_id": r["run_id"]}
        row.update({k: _cell_value(r["cell"].get(k)) for k in swept})
        row.update(seed=r["seed"], status=r["status"], epochs=r["epochs"],
                   final_train_loss=s.get("final_train_loss"), final_val_loss=s.get("final_val_loss"))
        for m in metrics:
            row[f"best_{m}"] = s.get(f"best_{m}")
        for m in metrics:
            row[f"test_{m[4:]}"] = s.get(f"test_{m[4:]}")
        e, t = to_target(r.get("history") or [], target) if r["status"] == "ok" else (math.nan, math.nan)
        row.update(epochs_to_target=e, time_to_target_s=t, wall_time_s=r["wall_time_s"],
                   n_params=r["n_params"], error=r.get("error", ""))
        rows.append(row)
    cols = ["run_id", *swept, "seed", "status", "epochs", "final_train_loss", "final_val_loss",
            *[f"best_{m}" for m in metrics], *[f"test_{m[4:]}" for m in metrics],
            "epochs_to_target", "time_to_target_s", "wall_time_s", "n_params", "error"]
    return pd.DataFrame(rows, columns=cols)


def _cell_value(v):
    return json.dumps(v) if isinstance(v, (list, dict)) else v


def history_frame(records: list[dict], metrics: tuple) -> pd.DataFrame:
    cols = ["run_id", "epoch", "step", "train_loss", *metrics, "lr", "grad_norm", "elapsed_s"]
    rows = [{"run_id": r["run_id"], **h} for r in records for h in r.get("history") or []]
    return pd.DataFrame(rows, columns=cols)


def write_tables(out: Path, exp, records: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    from lossbench.sweep.execute import atomic_write

    runs = runs_frame(records, exp.swept, exp.metrics, exp.target)
    history = history_frame(records, exp.metrics)
    atomic_write(out / "runs.csv", runs.to_csv(index=False))
    atomic_write(out / "history.csv", history.to_csv(index=False))
    return runs, history


def read_results(directory: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    d = Path(directory)
    missing = [f for f in ("runs.csv", "history.csv", "manifest.json") if not (d / f).is_file()]
    if missing:
        raise LossbenchError(f"{directory}: not a lossbench results directory (no {' / '.join(missing)})")
    runs = pd.read_csv(d / "runs.csv", dtype={"error": str, "run_id": str}, keep_default_na=True)
    runs["error"] = runs["error"].fillna("")
    history = pd.read_csv(d / "history.csv")
    return runs, history, json.loads((d / "manifest.json").read_text())
