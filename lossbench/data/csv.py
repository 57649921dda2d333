"""The user's own table: a CSV file with a header row, one target column, numeric features.

Non-numeric feature columns are rejected (DataError naming them) rather than one-hot
encoded: silently widening the input would change the model's size behind the user's
back, and encoding choices belong in the user's preprocessing, not here. Missing values
are rejected for the same reason. The target may be anything: see `infer_task`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lossbench.data.base import DATASETS, TASKS, TEST_FRACTION, Raw, carve_test, loader_rng
from lossbench.errors import DataError
from lossbench.registry import Choice, Optional, Text, fail

MAX_AUTO_CLASSES = 20  # more distinct integer values than this look like a quantity


def infer_task(column) -> str:
    """Classification for text/bool targets and integer targets with few distinct values."""
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    if not is_numeric_dtype(column) or is_bool_dtype(column):
        return "classification"
    values = column.to_numpy(np.float64)
    if np.all(values == np.round(values)) and len(np.unique(values)) <= MAX_AUTO_CLASSES:
        return "classification"
    return "regression"


@DATASETS.register("csv", path=Text(), target=Optional(Text()), task=Optional(Choice(*TASKS)),
                   test_fraction=TEST_FRACTION)
def csv_file(seed, *, path, target=None, task=None, test_fraction=0.2) -> Raw:
    """Your own table: `path` to a CSV file; `target` defaults to the last column, `task` is inferred if null."""
    file = Path(path).expanduser()
    frame = _read(file)
    target = frame.columns[-1] if target is None else target
    if target not in frame.columns:
        raise fail("dataset.target", f"must be a column of {file} ({', '.join(map(str, frame.columns))})", target,
                   [str(c) for c in frame.columns])
    x = _features(file, frame.drop(columns=[target]))
    task = task or infer_task(frame[target])
    n_outputs, y = _labels(file, frame[target], target, task)
    x, y, x_test, y_test = carve_test(x, y, test_fraction, loader_rng(seed))
    return Raw(task, n_outputs, x, y, x_test, y_test)


def _read(file: Path):
    # Imported here: pandas costs ~0.5 s to import and only this loader needs it.
    import pandas as pd

    if file.is_dir():
        raise DataError(f"dataset.path: is a directory, not a CSV file, got {str(file)!r}")
    if not file.is_file():
        raise DataError(f"dataset.path: no such file, got {str(file)!r}")
    if file.stat().st_size == 0:
        raise DataError(f"{file}: is empty; a CSV file needs a header row and at least two rows of data")
    try:
        frame = pd.read_csv(file)
    except UnicodeDecodeError as e:
        raise DataError(f"{file}: is not UTF-8 text (byte 0x{e.object[e.start]:02x}); save it as UTF-8") from None
    except (ValueError, OSError) as e:  # pandas' parse errors are ValueErrors
        raise DataError(f"{file}: cannot parse as CSV: {e}") from None
    if frame.shape[1] < 2 or len(frame) < 2:
        header = str(frame.columns[0]) if frame.shape[1] else ""
        other = next((sep for sep in (";", "\t", "|") if sep in header), None)
        hint = f"; its header holds {other!r}: lossbench reads comma-separated files" if other else ""
        raise DataError(f"{file}: needs a header, at least two rows, a feature column and a target column "
                        f"(found {frame.shape[1]} column{'s' * (frame.shape[1] != 1)}, {len(frame)} rows){hint}")
    missing = frame.isna().sum()
    if missing.any():
        where = ", ".join(f"{c!r} ({n})" for c, n in missing[missing > 0].items())
        raise DataError(f"{file}: missing values in column(s) {where}; fill or drop them first")
    return frame


def _features(file: Path, features) -> np.ndarray:
    from pandas.api.types import is_numeric_dtype

    text = [c for c in features.columns if not is_numeric_dtype(features[c])]
    if text:
        raise DataError(f"{file}: feature column(s) {text} are not numeric; encode them "
                        "(e.g. pandas.get_dummies) or drop them first")
    x = features.to_numpy(np.float32)
    bad = [c for c, ok in zip(features.columns, np.isfinite(x).all(axis=0)) if not ok]
    if bad:
        raise DataError(f"{file}: feature column(s) {bad} hold infinite or too large values")
    return x


def _labels(file: Path, column, target: str, task: str) -> tuple[int, np.ndarray]:
    """(n_outputs, y): class indices 0..k-1 in sorted order, or one float32 target column."""
    from pandas.api.types import is_numeric_dtype

    if task == "classification":
        values = column.to_numpy() if is_numeric_dtype(column) else column.astype(str).to_numpy()
        classes, y = np.unique(values, return_inverse=True)
        if len(classes) < 2:
            raise DataError(f"{file}: target {target!r} has a single class {classes[0]!r}")
        return len(classes), y.astype(np.int64)
    if not is_numeric_dtype(column):
        raise DataError(f"{file}: target {target!r} is not numeric, so it cannot be a "
                        "regression target (use task: classification)")
    y = column.to_numpy(np.float32)[:, None]
    if not np.isfinite(y).all():
        raise DataError(f"{file}: target {target!r} holds infinite or too large values")
    return 1, y
