"""Everything about a results directory: its files, how they are written, and reading them back.

    runs.csv, history.csv   the tables, rebuilt from the records (`write_tables`)
    config.yaml             the resolved config
    manifest.json           versions, machine, the plan (run ids), start/end time
    records/<run_id>.json   one per finished run: the truth the tables are made from
    params/<run_id>/*.npy   its parameters with train.save_params (initial, final, epoch_001, ...)
    rungs/<run_id>.json     with `prune`: a run paused at its rung, waiting for the rung's decision
    .lock                   held by the one `lossbench run` writing here

Every file is written atomically (temporary file, fsync, rename), so a kill at any moment
never leaves half a file. `open_store` is how `lossbench run` uses a directory: it takes
the lock, refuses a directory holding something else, applies --fresh / --retry-failed and
hands back a `Store` to write records into. `read_results` is how everything else reads
one: a missing or damaged file is a ResultsDirError naming it.

The lock is an advisory `flock` on `<out>/.lock`: the kernel drops it when its holder
dies, however it dies, so a lock left by a killed run is simply taken over. The file
also says who holds it, for the refusal message.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import io
import json
import math
import os
import platform
import re
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from threadpoolctl import threadpool_info

from lossbench import __version__
from lossbench.engine.metrics import first_hit
from lossbench.errors import DiskFull, LossbenchError
from lossbench.sweep.config import Experiment

RUNS, HISTORY, CONFIG, MANIFEST = "runs.csv", "history.csv", "config.yaml", "manifest.json"
RECORDS = "records"
PARAMS = "params"
RUNGS = "rungs"
LOCK = ".lock"
# Everything `lossbench run` writes besides records/; `--fresh` removes exactly these, nothing of the user's.
OWNED = (RUNS, HISTORY, CONFIG, MANIFEST)

RECORD = re.compile(r"^[0-9a-f]{12}\.json$")  # a run id: nothing else in records/ is ours
RECORD_TMP = re.compile(r"^\.[0-9a-f]{12}\.json\..+\.tmp$")  # what atomic_write leaves of one, if killed


class ResultsDirError(LossbenchError):
    """The results directory cannot be used as asked (busy, holds another experiment,
    or a file in it is missing or damaged)."""


# -- writing files ----------------------------------------------------------------------

_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read the process umask (the only way is to set it) and put it back


def atomic_write(path: Path, text: str | bytes) -> None:
    """Readers see the old file or the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are shared like any file
        with os.fdopen(fd, "wb" if isinstance(text, bytes) else "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- the lock -----------------------------------------------------------------------------

class Lock:
    def __init__(self, out: Path):
        self.path = out / LOCK
        self.fd: int | None = None

    def acquire(self) -> Lock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise ResultsDirError(f"{self.path.parent}: another `lossbench run` is writing here ({holder}); "
                                  "wait for it to finish, or use --out for a different directory") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {_now()}\n".encode())
        self.fd = fd
        return self

    def __enter__(self) -> Lock:
        return self if self.fd is not None else self.acquire()

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing releases the flock; the file stays, harmlessly
            self.fd = None


# -- ownership, compatibility, --fresh ------------------------------------------------------

def record_paths(out: Path) -> list[Path]:
    d = out / RECORDS
    return [p for p in d.iterdir() if RECORD.match(p.name)] if d.is_dir() else []


def sweep_temporaries(out: Path) -> None:
    """Remove what a killed writer left mid-`atomic_write` (called with the lock held:
    nobody else is writing). Such a file was never renamed, so it was never a result.
    Only our own temporaries: `.<file we write>.<random>.tmp`."""
    for name in OWNED:
        for p in out.glob(f".{name}.*.tmp"):
            p.unlink(missing_ok=True)
    for d in (out / RECORDS, out / RUNGS):
        for p in d.iterdir() if d.is_dir() else ():
            if RECORD_TMP.match(p.name):
                p.unlink(missing_ok=True)
    for p in out.glob(f"{PARAMS}/*/.*.npy.*.tmp"):
        p.unlink(missing_ok=True)


def check_owned(out: Path) -> None:
    """Never overwrite what `lossbench run` did not write: a directory holding a file we
    would write (config.yaml, runs.csv, ...) must be one of ours, with our manifest."""
    try:
        ours = "lossbench" in json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError, TypeError):
        ours = False
    clash = [n for n in OWNED if (out / n).exists()]
    if clash and not ours:
        raise ResultsDirError(f"{out}: holds {', '.join(clash)} that lossbench did not write; "
                              "choose another --out (lossbench writes config.yaml, runs.csv, history.csv, "
                              "manifest.json and records/)")


def clear(out: Path) -> None:
    """`--fresh`: forget every recorded run (called with the lock held)."""
    for p in record_paths(out):
        p.unlink()
    for name in OWNED:
        (out / name).unlink(missing_ok=True)
    for d in (PARAMS, RUNGS):
        if (out / d).is_dir():
            shutil.rmtree(out / d)


def previous_run_ids(out: Path) -> set[str]:
    """The runs the directory was made for: the manifest's plan, or failing that the records."""
    man = out / MANIFEST
    if man.is_file():
        try:
            ids = json.loads(man.read_text()).get("run_ids")
            if ids is not None:
                return set(ids)
        except (OSError, ValueError, AttributeError):
            pass
    return {p.stem for p in record_paths(out)}


def check_compatible(out: Path, config: dict, run_ids: list[str], data: list[dict] | None = None) -> None:
    """Refuse a directory holding another experiment, unless the new config only adds runs
    (a wider grid, more seeds): every run planned before is still planned now. Run ids
    name the data by content, so the same data at another path is the same experiment."""
    dropped = previous_run_ids(out) - set(run_ids)
    if not dropped:
        return
    try:
        old = yaml.safe_load((out / CONFIG).read_text())
    except (OSError, yaml.YAMLError):
        old = None
    what = config_diff(old, config) if isinstance(old, dict) else ""
    if data is not None and (not what or what.startswith("dataset.path ")):
        what = _data_diff(out, data) or what
    raise ResultsDirError(
        f"{out}: holds results of a different config ({what or f'{len(dropped)} recorded runs are not in this one'}); "
        "only adding grid values or seeds may reuse it. Use --fresh to start over, or --out for a new directory")


def _data_diff(out: Path, data: list[dict]) -> str:
    """'the dataset's content changed (dataset.sha256 "ab.." -> "cd..")', from the manifest."""
    try:
        old = json.loads((out / MANIFEST).read_text()).get("data")
    except (OSError, ValueError, AttributeError):
        return ""
    if not isinstance(old, list) or old == data:
        return ""
    diff = config_diff({"dataset": old[0]}, {"dataset": data[0]}) if len(old) == len(data) == 1 else ""
    return "the dataset's content changed" + (f": {diff}" if diff else "")


def config_diff(old: dict, new: dict, limit: int = 3) -> str:
    """'train.epochs 3 -> 5, optimizer.lr 0.1 -> 0.05': the dotted keys that differ."""
    a, b = _flatten(old), _flatten(new)
    changes = []
    for k in sorted(a.keys() | b.keys()):
        if a.get(k, _MISSING) != b.get(k, _MISSING):
            changes.append(f"{k} {_show(a.get(k, _MISSING))} -> {_show(b.get(k, _MISSING))}")
    more = f", and {len(changes) - limit} more" if len(changes) > limit else ""
    return ", ".join(changes[:limit]) + more


_MISSING = object()


def _show(v) -> str:
    return "(unset)" if v is _MISSING else json.dumps(v, default=str)


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


# -- records and tables ---------------------------------------------------------------------

def load_records(out: Path, run_ids: list[str]) -> tuple[list[dict], list[tuple[Path, Path, str]]]:
    """The records of `run_ids` found in `out`, and the damaged ones set aside: (records,
    [(damaged file, where it was moved, what is wrong)]). A damaged record (a disk that
    filled, a copy that was cut, an edit) is renamed, never deleted: its run trains again."""
    recs, aside = [], []
    for rid in run_ids:
        path = out / RECORDS / f"{rid}.json"
        if path.exists():
            try:
                recs.append(_read_record(path, rid))
            except ValueError as e:  # never written by atomic_write: changed by hand, or a disk fault
                aside.append((path, _set_aside(path), str(e)))
    return recs, aside


def _read_record(path: Path, rid: str) -> dict:
    """The record of run `rid` in `path`; a ValueError saying what is wrong with it
    (empty, not JSON, not a lossbench record)."""
    if not path.stat().st_size:
        raise ValueError("empty")
    try:
        rec = json.loads(path.read_text())
    except ValueError as e:  # JSONDecodeError, or bytes that are not UTF-8
        raise ValueError(f"not JSON{_where(e)}") from None
    if not isinstance(rec, dict) or rec.get("run_id") != rid or "status" not in rec:
        raise ValueError("not a lossbench record")
    return rec


def recorded(out: Path, run_ids: list[str], where: str = RECORDS) -> dict[str, dict]:
    """Read only: run_id -> record of the runs in `out` whose record is sound (in records/,
    or the paused ones in rungs/). A damaged record is left where it is and counts as not
    recorded (a paused one is written again when its run reaches the rung again)."""
    recs = {}
    for rid in run_ids:
        try:
            recs[rid] = _read_record(out / where / f"{rid}.json", rid)
        except (OSError, ValueError):
            continue
    return recs


def _set_aside(path: Path) -> Path:
    """Rename `path` to `path.damaged` (or `.damaged-2`, ...): out of the way, not lost."""
    n, dest = 1, path.with_name(path.name + ".damaged")
    while dest.exists():
        n += 1
        dest = path.with_name(f"{path.name}.damaged-{n}")
    path.rename(dest)
    return dest


@contextlib.contextmanager
def _disk(out: Path, records: dict) -> Iterator[None]:
    """A full disk (or quota) while writing `out` is one line that keeps what finished."""
    try:
        yield
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise DiskFull(f"{out}: no space left on the device while writing results; the {len(records)} finished "
                       f"run{'s' * (len(records) != 1)} in {out / RECORDS} are kept. Free some space and run the "
                       "same command again to train the rest") from None


def write_record(out: Path, record: dict) -> None:
    """The run's parameters (train.save_params) first, then its record: a recorded run has
    all of its files, and a run killed in between trains again and rewrites them."""
    record = dict(record)
    params = record.pop("params", None) or {}
    if params:
        (out / PARAMS / record["run_id"]).mkdir(parents=True, exist_ok=True)
    for name, array in params.items():
        buf = io.BytesIO()
        np.save(buf, array)
        atomic_write(out / PARAMS / record["run_id"] / f"{name}.npy", buf.getvalue())
    atomic_write(out / RECORDS / f"{record['run_id']}.json", json.dumps(record))


def to_target(history: list[dict], target: dict | None) -> tuple[float, float]:
    """(epochs, seconds) until the target metric first reaches the target value; NaN if never."""
    hit = first_hit(history, target["metric"], target["value"]) if target else None
    return (hit["epoch"], hit["elapsed_s"]) if hit else (math.nan, math.nan)


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
                   n_params=r["n_params"], error=r.get("error", ""), stack_size=r.get("stack_size", 1))
        rows.append(row)
    cols = ["run_id", *swept, "seed", "status", "epochs", "final_train_loss", "final_val_loss",
            *[f"best_{m}" for m in metrics], *[f"test_{m[4:]}" for m in metrics],
            "epochs_to_target", "time_to_target_s", "wall_time_s", "n_params", "error"]
    # runs that trained in a stack: how many shared its time (a column only when some did)
    stacked = any(row["stack_size"] > 1 for row in rows)
    return pd.DataFrame(rows, columns=cols + ["stack_size"] * stacked)


def _cell_value(v):
    return json.dumps(v) if isinstance(v, (list, dict)) else v


_PATH = re.compile(r"x\d+")


def history_frame(records: list[dict], metrics: tuple) -> pd.DataFrame:
    """history.csv: a row per run per epoch; a test function's rows end with its point
    (x0, x1, ...: the path)."""
    cols = ["run_id", "epoch", "step", "train_loss", *metrics, "lr", "grad_norm", "elapsed_s"]
    rows = [{"run_id": r["run_id"], **h} for r in records for h in r.get("history") or []]
    dims = max((sum(1 for k in row if _PATH.fullmatch(k)) for row in rows), default=0)
    return pd.DataFrame(rows, columns=cols + [f"x{i}" for i in range(dims)])


def write_tables(out: Path, exp: Experiment, records: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    runs = runs_frame(records, exp.swept, exp.metrics, exp.target)
    history = history_frame(records, exp.metrics)
    atomic_write(out / RUNS, runs.to_csv(index=False))
    atomic_write(out / HISTORY, history.to_csv(index=False))
    return runs, history


class _Tables:
    """runs.csv / history.csv from the records held in memory, in the experiment's run order
    (so tables do not depend on which worker finished first). Rewriting them costs a few
    ms per hundred runs, so during a sweep they are refreshed at most every `every` seconds;
    the records are the truth and the last write happens in all cases but SIGKILL, after
    which the next run rebuilds them."""

    def __init__(self, out: Path, exp: Experiment, records: dict, every: float = 1.0):
        self.out, self.exp, self.records, self.every = out, exp, records, every
        self.last = -math.inf

    def add(self, record: dict) -> None:
        self.records[record["run_id"]] = record
        if time.monotonic() - self.last >= self.every:
            self.write()

    def write(self) -> None:
        ordered = [self.records[s.run_id] for s in self.exp.runs if s.run_id in self.records]
        write_tables(self.out, self.exp, ordered)
        self.last = time.monotonic()


# -- the manifest ---------------------------------------------------------------------------

def manifest(started: str, ended: str | None, exp: Experiment, interrupted: bool = False) -> dict:
    return {
        "lossbench": __version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "blas": _blas(),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count()},
        "config": exp.source,
        "swept": exp.swept,
        "target": exp.target,
        "task": exp.task,
        "runs": len(exp.runs),
        "run_ids": [s.run_id for s in exp.runs],  # what the directory is for; see check_compatible
        "data": exp.data,  # the datasets as run ids name them: by content (see data.identity)
        "started": started,
        "ended": ended,
        "interrupted": interrupted,
    }


def _blas() -> list[dict]:
    try:
        return [{k: i.get(k) for k in ("internal_api", "version", "num_threads")} for i in threadpool_info()]
    except Exception:  # threadpoolctl cannot always introspect; the manifest is informational
        return []


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# -- a directory opened for writing ---------------------------------------------------------

class Store:
    """A results directory opened by `open_store` for one experiment, lock held.

    `records` holds the runs kept from before (run_id -> record); `begin` writes the
    config and the manifest, `add` records one finished run, `finish` writes the final
    tables and manifest."""

    def __init__(self, out: Path, exp: Experiment, records: dict[str, dict],
                 set_aside: list[tuple[Path, Path, str]] | None = None):
        self.out, self.exp, self.records = out, exp, records
        self.paused = recorded(out, [s.run_id for s in exp.runs if s.run_id not in records], RUNGS)
        self.set_aside = set_aside or []  # damaged records renamed by open_store: (file, renamed to, what)
        self._tables = _Tables(out, exp, records)
        self._started: str | None = None

    def todo(self) -> list:
        """The experiment's RunSpecs not recorded yet, in run order."""
        return [s for s in self.exp.runs if s.run_id not in self.records]

    def begin(self) -> None:
        with _disk(self.out, self.records):
            (self.out / RECORDS).mkdir(exist_ok=True)
            atomic_write(self.out / CONFIG, yaml.safe_dump(self.exp.config, sort_keys=False))
            self._started = _now()
            atomic_write(self.out / MANIFEST, json.dumps(manifest(self._started, None, self.exp), indent=2))

    def add(self, record: dict) -> None:
        with _disk(self.out, self.records):
            write_record(self.out, record)
            self._tables.add({k: v for k, v in record.items() if k != "params"})  # arrays stay on disk only
            if self.paused.pop(record["run_id"], None) is not None:  # finished: its rung's copy is done with
                (self.out / RUNGS / f"{record['run_id']}.json").unlink(missing_ok=True)

    def pause(self, record: dict) -> None:
        """Keep a run paused at its rung (prune): it survives a kill, as a finished run does."""
        with _disk(self.out, self.records):
            (self.out / RUNGS).mkdir(exist_ok=True)
            atomic_write(self.out / RUNGS / f"{record['run_id']}.json", json.dumps(record))
            self.paused[record["run_id"]] = record

    def finish(self, interrupted: bool = False) -> None:
        with _disk(self.out, self.records):
            self._tables.write()
            atomic_write(self.out / MANIFEST,
                         json.dumps(manifest(self._started, _now(), self.exp, interrupted=interrupted), indent=2))


@contextlib.contextmanager
def open_store(out: Path, exp: Experiment, *, fresh: bool = False, retry_failed: bool = False) -> Iterator[Store]:
    """Lock `out` (created if need be) for `exp`, or raise ResultsDirError before anything
    is written: another run holds it, it holds files lossbench did not write, or (unless
    `fresh`) it holds a different experiment. `fresh` forgets every recorded run;
    `retry_failed` forgets the failed ones."""
    if out.exists() and not out.is_dir():
        raise ResultsDirError(f"{out}: is a file, not a directory; choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        lock = Lock(out).acquire()
    except OSError as e:
        raise ResultsDirError(f"{out}: cannot be used as a results directory: {e.strerror or e}") from None
    with lock:
        check_owned(out)
        if not fresh:
            check_compatible(out, exp.config, [s.run_id for s in exp.runs], exp.data)
        sweep_temporaries(out)
        if fresh:
            clear(out)
        recs, aside = load_records(out, [s.run_id for s in exp.runs])
        yield Store(out, exp, kept({r["run_id"]: r for r in recs}, exp, retry_failed), aside)


def kept(records: dict[str, dict], exp: Experiment, retry_failed: bool = False) -> dict[str, dict]:
    """The records a run of `exp` keeps: not the failed ones with --retry-failed, nor the
    pruned ones unless `exp` prunes as they were (without `prune`, they train to the end)."""
    settings = dataclasses.asdict(exp.prune) if exp.prune is not None else None
    return {k: r for k, r in records.items() if not (retry_failed and r["status"] == "failed") and
            (r["status"] != "pruned" or r.get("prune") == settings)}


# -- reading results back -------------------------------------------------------------------

# The columns the analysis relies on; lossbench writes more.
_RUNS_COLUMNS = ("run_id", "seed", "status", "wall_time_s", "error")
_HISTORY_COLUMNS = ("run_id", "epoch", "train_loss", "val_loss")
_NUMERIC = ("seed", "epoch", "epochs", "step", "wall_time_s", "train_loss", "val_loss", "elapsed_s")


def read_results(directory: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(runs, history, manifest) of a results directory. A missing, unreadable or damaged
    file is a ResultsDirError whose one-line message names it."""
    d = Path(directory)
    if not d.exists():
        raise ResultsDirError(f"{directory}: no such directory")
    if not d.is_dir():
        raise ResultsDirError(f"{directory}: is a file; give the results directory `lossbench run` wrote")
    missing = [f for f in (RUNS, HISTORY, MANIFEST) if not (d / f).is_file()]
    if missing:
        raise ResultsDirError(f"{directory}: not a lossbench results directory (no {' / '.join(missing)})")
    man = _read_manifest(d / MANIFEST)
    runs = _read_table(d / RUNS, _RUNS_COLUMNS, dtype={"error": str, "run_id": str})
    runs["error"] = runs["error"].fillna("")
    unswept = [k for k in man.get("swept") or [] if k not in runs.columns]
    if unswept:
        raise ResultsDirError(f"{d / RUNS}: damaged: no column {', '.join(map(str, unswept))}, "
                              f"which {MANIFEST} says is swept")
    history = _read_table(d / HISTORY, _HISTORY_COLUMNS)
    return runs, history, man


def _where(e: ValueError) -> str:
    """Where a JSON document broke, in our words rather than the decoder's."""
    return f" (at line {e.lineno}, column {e.colno})" if isinstance(e, json.JSONDecodeError) else " (not UTF-8 text)"


def _read_manifest(path: Path) -> dict:
    try:
        man = json.loads(path.read_text())
    except OSError as e:
        raise ResultsDirError(f"{path}: cannot be read: {e.strerror or e}") from None
    except ValueError as e:  # JSONDecodeError, or bytes that are not UTF-8
        raise ResultsDirError(f"{path}: damaged, not JSON{_where(e)}") from None
    if not isinstance(man, dict):
        raise ResultsDirError(f"{path}: damaged: expected a JSON object, got {type(man).__name__}")
    target = man.get("target")
    if not isinstance(man.get("swept") or [], list) or not isinstance(man.get("run_ids") or [], list) or \
            not (target is None or isinstance(target, dict) and isinstance(target.get("metric"), str)
                 and isinstance(target.get("value"), (int, float))):
        raise ResultsDirError(f"{path}: damaged: 'swept', 'run_ids' or 'target' is not what lossbench writes")
    return man


def _read_table(path: Path, required: tuple, dtype: dict | None = None) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, dtype=dtype, keep_default_na=True)
    except OSError as e:
        raise ResultsDirError(f"{path}: cannot be read: {e.strerror or e}") from None
    except pd.errors.EmptyDataError:
        raise ResultsDirError(f"{path}: empty, not a table lossbench wrote") from None
    except (ValueError, pd.errors.ParserError) as e:  # malformed CSV, bytes that are not UTF-8
        raise ResultsDirError(f"{path}: damaged, not a CSV table ({' '.join(str(e).split())})") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ResultsDirError(f"{path}: damaged: missing column{'s' * (len(missing) > 1)} {', '.join(missing)}")
    for c in _NUMERIC:
        if c in frame.columns and (pd.to_numeric(frame[c], errors="coerce").isna() & frame[c].notna()).any():
            raise ResultsDirError(f"{path}: damaged: column {c} holds values that are not numbers")
    return frame
