"""Datasets: one `load(name, ...)` for every source, registered by name in DATASETS.

A loader (idx.py, synthetic.py, csv.py) only produces raw arrays; `load` does what all
sources share — option checks, the seeded train/val split, `limit`, normalization — so
every dataset behaves the same way for the same config.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lossbench.data import csv, functions, idx, synthetic  # noqa: F401  (importing registers the loaders)
from lossbench.data.base import DATASETS, Raw
from lossbench.registry import fail, split_named

__all__ = ["DATASETS", "Dataset", "describe", "identity", "load", "load_spec", "prepare", "status"]

_BLOCK_ROWS = 512  # rows per block when computing the variance (measured fastest)


@dataclass(repr=False)
class Dataset:
    """Train/val/test arrays ready for training: float32 features, normalized."""

    name: str
    task: str  # "classification" or "regression"
    n_outputs: int  # classes (classification) or target columns (regression)
    x_train: np.ndarray  # float32 (N, n_features), C-contiguous
    y_train: np.ndarray  # int64 (N,) class indices, or float32 (N, n_outputs)
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    image_shape: tuple[int, int, int] | None = None  # (channels, height, width); None for tabular data
    function: Any = None  # a test function (task "function": the parameters are its point), else None

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    def __repr__(self) -> str:  # the default would print the arrays
        return (f"Dataset({self.name!r}, {self.task}, n_outputs={self.n_outputs}, "
                f"n_features={self.n_features}, train={len(self.x_train)}, "
                f"val={len(self.x_val)}, test={len(self.x_test)})")


def load_spec(spec: dict, cache: dict) -> Dataset:
    """Load a config's `dataset` mapping ({name, **options}) once per distinct mapping."""
    key = json.dumps(spec, sort_keys=True, default=str)
    if key not in cache:
        name, options = split_named("dataset", spec, "dataset")
        cache[key] = load(name, **options)
    return cache[key]


def describe(spec: dict, cache: dict) -> tuple[str, int, int, tuple | None]:
    """(task, n_features, n_outputs, image_shape) of a checked `dataset` mapping: known
    without reading files for MNIST-format data, else from loading it (into `cache`;
    synthetic and CSV data load in well under a second)."""
    name = spec["name"]
    if name in idx.KNOWN:
        if spec.get("path") is not None:
            idx.find_files(name, spec["path"])  # an explicit path must hold the files
        return idx.KNOWN[name]
    ds = load_spec(spec, cache)
    return ds.task, ds.n_features, ds.n_outputs, ds.image_shape


# ---------------------------------------------------------------- before a sweep

def prepare(spec: dict, on_event=None) -> str | None:
    """Make a checked `dataset` mapping's files available before anything trains: found
    locally or downloaded (progress to `on_event`), verified and decoded into the cache.
    Returns where the files are (None for data that has no files to prepare); raises one
    DataError saying what was tried and where to put the files by hand."""
    name = spec["name"]
    if name not in idx.KNOWN:
        return None  # generated from its options, or a CSV file validation has already read
    idx.load_arrays(name, spec.get("path"), spec.get("mirrors"), on_event)
    return str(next(iter(idx.find_files(name, spec.get("path")).values())).parent)


def available(spec: dict) -> bool:
    """Whether loading `spec` needs no download (the files are found locally)."""
    return spec["name"] not in idx.KNOWN or idx.find_files(spec["name"], spec.get("path")) is not None


def status(spec: dict) -> str:
    """What `validate` can say about a dataset without downloading anything: where its
    files are (headers checked), or that a download would be needed. Raises DataError for
    files that are present but are not what they should be."""
    name = spec["name"]
    if name not in idx.KNOWN:
        return f"{name}: {'file ' + str(spec['path']) if spec.get('path') else 'generated from its options'}"
    files = idx.find_files(name, spec.get("path"))
    if files is None:
        return (f"{name}: not found locally (looked in {', '.join(map(str, idx.search_dirs(name)))}); "
                f"a download would be needed into {idx.cache_dir(name)} (`lossbench data fetch {name}`)")
    idx.check_headers(name, files)
    return f"{name}: found in {next(iter(files.values())).parent}"


_FILE_HASHES: dict = {}  # (path, size, mtime) -> sha256: a file is hashed once per process


def identity(spec: dict) -> dict:
    """The `dataset` mapping as a run's identity: the data named by content, not by path.

    MNIST-format data is verified to be its pinned content whatever directory it comes
    from, so its name says it all (path and mirrors dropped). A CSV file's path becomes
    the sha256 of its bytes. Generated data is named by its options already.
    """
    if spec["name"] in idx.KNOWN:
        return {k: v for k, v in spec.items() if k not in ("path", "mirrors")}
    if spec["name"] == "csv" and isinstance(spec.get("path"), str):
        out = {k: v for k, v in spec.items() if k != "path"}
        out["sha256"] = file_sha256(Path(spec["path"]).expanduser())
        return out
    return spec


def file_sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _FILE_HASHES:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        _FILE_HASHES[key] = digest.hexdigest()
    return _FILE_HASHES[key]


def load(name: str, /, **options) -> Dataset:
    """Load a dataset, split train/val with `seed`, and normalize with train statistics.

    Every dataset takes `seed` (0: its split, and for synthetic data the data itself),
    `val_fraction` (0.1), `normalize` (standard, minmax or none; statistics from the
    train split only) and `limit` (caps the train pool, before the val split, and the
    test split to that many randomly chosen examples each), plus its loader's options
    (`lossbench list datasets`). The same arguments always give identical arrays.
    """
    full = DATASETS.check(name, options)
    seed, val_fraction, normalize, limit = (full.pop(k) for k in DATASETS.common.params)
    raw: Raw = DATASETS.get(name)(seed, **full)
    if raw.task == "function":
        return _function_problem(name, raw, val_fraction, normalize, limit)
    rng = np.random.default_rng(seed)
    x, y, x_test, y_test = raw.x, raw.y, raw.x_test, raw.y_test
    if limit is not None:
        x, y = _subset(x, y, limit, rng)
        x_test, y_test = _subset(x_test, y_test, limit, rng)

    n = len(x)
    n_val = int(round(n * val_fraction))
    if val_fraction > 0:
        n_val = max(n_val, 1)
    n_val = min(n_val, n - 1)  # keep at least one training example
    order = rng.permutation(n)
    val, train = order[:n_val], order[n_val:]

    x_train, x_val = _features(x[train], raw), _features(x[val], raw)
    x_test = _features(x_test, raw)
    shift, scale = _stats(x_train, normalize, raw.image_shape)
    for part in (x_train, x_val, x_test):  # in place: each is a fresh float32 array
        part -= shift
        part /= scale
    return Dataset(
        name=name, task=raw.task, n_outputs=int(raw.n_outputs),
        x_train=x_train, y_train=_target(y[train], raw),
        x_val=x_val, y_val=_target(y[val], raw),
        x_test=x_test, y_test=_target(y_test, raw),
        image_shape=raw.image_shape,
    )


def _function_problem(name: str, raw: Raw, val_fraction, normalize, limit) -> Dataset:
    """A test function as a dataset of one row (one step an epoch), in every split: the
    validation loss is the function's value at the point, without the gradient's noise."""
    defaults = {k: p.default for k, p in DATASETS.common.params.items()}
    for key, value in (("val_fraction", val_fraction), ("normalize", normalize), ("limit", limit)):
        if value != defaults[key]:
            raise fail(f"dataset.{key}", f"does not apply to the test function {name!r}: it has no data", value)
    x, y = np.zeros((1, 1), np.float32), np.zeros((1, raw.n_outputs), np.float32)
    return Dataset(name, "function", raw.n_outputs, x, y, x, y, x, y, function=raw.function)


def _subset(x, y, limit, rng):
    if len(x) <= limit:
        return x, y
    keep = np.sort(rng.choice(len(x), size=limit, replace=False))  # sorted: keep source order
    return x[keep], y[keep]


def _features(x: np.ndarray, raw: Raw) -> np.ndarray:
    """A new C-contiguous float32 array (never a view of the loader's data)."""
    out = np.array(x, dtype=np.float32, order="C", copy=True)
    if raw.x_divisor != 1:
        out /= np.float32(raw.x_divisor)
    return out


def _stats(x: np.ndarray, normalize: str, image_shape=None):
    """(shift, scale) per feature from the train split only, so val/test stay unseen.

    Image data gets one statistic per channel, over every pixel of the train split
    (torchvision's convention: Normalize(mean, std) per channel). Per pixel, MNIST's
    rarely-inked border pixels would get a tiny std and enormous values.
    """
    n_features = x.shape[1]
    if normalize == "none" or len(x) == 0:
        return np.zeros(n_features, np.float32), np.ones(n_features, np.float32)
    if image_shape is not None:
        shift, spread = _channel_stats(x.reshape(len(x), image_shape[0], -1), normalize)
        repeat = n_features // image_shape[0]
        return np.repeat(shift, repeat).astype(np.float32), np.repeat(spread, repeat).astype(np.float32)
    if normalize == "standard":
        shift = x.mean(axis=0, dtype=np.float64)
        # Two-pass variance in float64, a block of rows at a time: exact enough for
        # features with a large mean, without a full-size temporary.
        squares = np.zeros(n_features)
        for start in range(0, len(x), _BLOCK_ROWS):
            diff = x[start:start + _BLOCK_ROWS] - shift
            squares += np.einsum("ij,ij->j", diff, diff)
        spread = np.sqrt(squares / len(x))
    else:  # minmax
        shift = x.min(axis=0).astype(np.float64)
        spread = x.max(axis=0).astype(np.float64) - shift
    # A constant feature (e.g. MNIST's border pixels) would divide by zero.
    spread[spread == 0] = 1.0
    return shift.astype(np.float32), spread.astype(np.float32)


def _channel_stats(x: np.ndarray, normalize: str):
    """One (shift, spread) per channel of (N, C, H*W) images, in float64, a block at a time."""
    if normalize == "minmax":
        shift = x.min(axis=(0, 2)).astype(np.float64)
        spread = x.max(axis=(0, 2)).astype(np.float64) - shift
    else:
        shift = x.mean(axis=(0, 2), dtype=np.float64)
        squares = np.zeros(x.shape[1])
        for start in range(0, len(x), _BLOCK_ROWS):
            diff = x[start:start + _BLOCK_ROWS] - shift[:, None]
            squares += np.einsum("icj,icj->c", diff, diff)
        spread = np.sqrt(squares / (len(x) * x.shape[2]))
    spread[spread == 0] = 1.0
    return shift, spread


def _target(y: np.ndarray, raw: Raw) -> np.ndarray:
    if raw.task == "classification":
        return np.ascontiguousarray(y, dtype=np.int64)
    y = y.reshape(len(y), raw.n_outputs)  # regression targets are always (N, n_outputs)
    return np.ascontiguousarray(y, dtype=np.float32)
