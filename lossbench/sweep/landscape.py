"""Loss landscapes of recorded runs: pick runs in a results directory, rebuild their
model, data and loss from their records, and evaluate the engine's landscape there.

The runs must have kept their parameters (`train.save_params`); `pca` needs every
epoch's (`train.save_params: every_epoch`). Nothing here draws or prints: `landscape`
returns a `Landscape` for plots.draw_landscape and the CLI.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lossbench import data
from lossbench.engine import landscape as ls
from lossbench.engine import losses, nn
from lossbench.engine.functions import FUNCTIONS
from lossbench.engine.nn.conv import BatchNorm
from lossbench.engine.train import encode_targets
from lossbench.errors import LossbenchError
from lossbench.registry import Choice, split_named
from lossbench.sweep.store import PARAMS, RECORDS, read_results

KINDS = Choice("line", "plane", "pca")


@dataclass
class Landscape:
    kind: str
    runs: list[str]  # the run ids: one, or two for a line between runs' final parameters
    labels: list[str]  # each run as the user knows it ("optimizer.name=adam, seed=0")
    samples: int  # training examples evaluated
    coords: list[np.ndarray]  # line: [alphas]; plane and pca: [a, b]
    loss: np.ndarray  # line: (len(alphas),); plane and pca: (len(b), len(a))
    sharpness: float  # top Hessian eigenvalue at the (first run's) final parameters
    sharpness_iters: int
    final_loss: float  # at the (first run's) final parameters
    path: np.ndarray | None = None  # pca: the epochs' coordinates, initial first, final last
    explained: tuple[float, float] | None = None  # pca: explained variance ratios
    seconds: dict[str, float] = field(default_factory=dict)  # surface, sharpness


def landscape(directory: str | Path, runs: list[str] | None = None, by: list[str] | None = None,
              kind: str = "line", samples: int | None = None, resolution: int = 51, seed: int = 0,
              sharpness: bool = True) -> Landscape:
    """The landscape of one recorded run (chosen by id, or the first ok run matching `by`
    KEY=VALUE filters), or for `kind="line"` with two run ids the line between their final
    parameters. `samples`: a fixed random subset (seeded by `seed`, as the directions are)
    of the training split; `resolution` points per axis."""
    KINDS.check("--kind", kind)
    d = Path(directory)
    ids = _select(d, runs or [], by or [])
    if len(ids) > 1 and kind != "line":
        raise LossbenchError(f"--kind {kind} takes one run; two runs (--run A --run B) draw the line between them")
    records = [_record(d, rid) for rid in ids]
    first = records[0]
    _params(d, ids[0], "final")  # first of all: were they kept?
    if split_named("dataset", first["config"]["dataset"], "dataset")[0] in FUNCTIONS:
        raise LossbenchError(f"landscape: run {ids[0]} is a test function's: its landscape is the function itself, "
                             f"drawn with its path by `lossbench plot {d} --kind path`")
    net, loss, x, t = _problem(first, samples, seed)
    surface = ls.Surface(net, loss, x, t)
    final = _params(d, ids[0], "final")
    started, res = time.perf_counter(), {}
    if kind == "line":
        other = _params(d, ids[1], "final") if len(ids) > 1 else None
        if other is not None and other.shape != final.shape:
            raise LossbenchError(f"runs {ids[0]} and {ids[1]} have different models; a line needs one architecture")
        start, end = (final, other) if other is not None else (_params(d, ids[0], "initial"), final)
        alphas = np.linspace(-0.5, 1.5, resolution)
        res.update(coords=[alphas], loss=ls.line(surface, start, end, alphas))
    elif kind == "plane":
        d1, d2 = ls.random_directions(final, net.layout, seed)
        a = np.linspace(-1.0, 1.0, resolution)
        res.update(coords=[a, a], loss=ls.plane(surface, final, d1, d2, a, a))
    else:
        path = np.stack([_params(d, ids[0], name) for name in _epochs(d, ids[0])] + [final])
        dirs, xy, var = ls.pca_directions(path, final)
        lo, hi = xy.min(axis=0), xy.max(axis=0)
        pad = 0.2 * np.maximum(hi - lo, 1e-12)
        a, b = (np.linspace(lo[i] - pad[i], hi[i] + pad[i], resolution) for i in (0, 1))
        res.update(coords=[a, b], loss=ls.plane(surface, final, dirs[0], dirs[1], a, b), path=xy,
                   explained=(float(var[0]), float(var[1])))
    seconds = {"surface": time.perf_counter() - started}
    lam, iters = (ls.top_eigenvalue(surface.gradient, final, seed) if sharpness else (float("nan"), 0))
    seconds["sharpness"] = time.perf_counter() - started - seconds["surface"]
    return Landscape(kind, ids, [_label(r) for r in records], len(x), sharpness=lam, sharpness_iters=iters,
                     final_loss=float(surface(final[None])[0]), seconds=seconds, **res)


def _select(d: Path, runs: list[str], by: list[str]) -> list[str]:
    table = read_results(d)[0]
    if len(runs) > 2:
        raise LossbenchError(f"--run: at most two runs (a line between them), got {len(runs)}")
    for rid in runs:
        if rid not in set(table["run_id"]):
            known = ", ".join(table["run_id"].head(5))
            raise LossbenchError(f"--run: unknown run id {rid!r} in {d} (its runs: {known}"
                                 f"{', ...' if len(table) > 5 else ''}; see runs.csv)")
    if runs:
        return list(runs)
    for item in by:
        key, sep, value = item.partition("=")
        if not sep:
            raise LossbenchError(f"--by: {item!r}: must be KEY=VALUE")
        if key not in table.columns:
            swept = ", ".join(c for c in table.columns if "." in c or c == "seed")
            raise LossbenchError(f"--by: {key} is not swept in {d}: every run has the same (its runs.csv has "
                                 f"{swept}); pick a run with --run ID")
        table = table[[_same(v, value) for v in table[key]]]
    ok = table[table["status"] == "ok"]
    if ok.empty:
        raise LossbenchError(f"{d}: no finished (ok) run matches {' '.join(by) or 'the results'}")
    return [str(ok["run_id"].iloc[0])]


def _same(cell, value: str) -> bool:
    try:
        return float(cell) == float(value)
    except (TypeError, ValueError):
        return str(cell) == value


def _record(d: Path, rid: str) -> dict:
    try:
        return json.loads((d / RECORDS / f"{rid}.json").read_text())
    except (OSError, ValueError) as e:
        raise LossbenchError(f"{d / RECORDS / f'{rid}.json'}: cannot be read: {e}") from None


def _params(d: Path, rid: str, name: str) -> np.ndarray:
    path = d / PARAMS / rid / f"{name}.npy"
    if not path.is_file():
        raise LossbenchError(f"run {rid} has no saved parameters ({path} is missing): set train.save_params: true "
                             "(every_epoch for --kind pca) in the config and run it again")
    return np.load(path)


def _epochs(d: Path, rid: str) -> list[str]:
    names = sorted(p.stem for p in (d / PARAMS / rid).glob("epoch_*.npy"))
    if not names:
        raise LossbenchError(f"run {rid} has no per-epoch parameters: --kind pca needs train.save_params: "
                             "every_epoch; set it in the config and run it again")
    return ["initial", *names]


def _label(record: dict) -> str:
    cell = ", ".join(f"{k}={v}" for k, v in (record.get("cell") or {}).items())
    return f"{cell + ', ' if cell else ''}seed={record['seed']}"


def _problem(record: dict, samples: int | None, seed: int):
    """(the run's model, its loss, the training examples and their encoded targets)."""
    cfg = record["config"]
    dset = data.load_spec(cfg["dataset"], {})
    loss_name, loss_kw = split_named("loss", cfg["loss"], "loss")
    loss = losses.build(loss_name, **loss_kw)
    n_out, encode = encode_targets(loss, loss_name, dset)
    model_name, model_kw = split_named("model", cfg["model"], "model")
    net = nn.build(model_name, dset.n_features, n_out, 0, dset.image_shape, **model_kw)
    if any(isinstance(layer, BatchNorm) for layer in net.layers):
        raise LossbenchError("landscape: models with batch norm are not supported (their running statistics "
                             "are not saved with the parameters)")
    x, y = dset.x_train, dset.y_train
    if samples is not None and samples < len(x):
        idx = np.sort(np.random.default_rng(seed).choice(len(x), samples, replace=False))
        x, y = x[idx], y[idx]
    return net, loss, x, encode(y)
