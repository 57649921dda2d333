"""Guarding a results directory: one writer at a time, and only the experiment it holds.

The lock is an advisory `flock` on `<out>/.lock`: the kernel drops it when its holder
dies, however it dies, so a lock left by a killed run is simply taken over. The file
also says who holds it, for the refusal message.
"""

from __future__ import annotations

import json
import os
import re
import socket
from datetime import datetime, timezone
from pathlib import Path

import yaml

from lossbench.errors import LossbenchError
from lossbench.sweep.store import RECORDS

LOCK = ".lock"
# Everything `lossbench run` writes; `--fresh` removes exactly these, nothing of the user's.
OWNED = ("runs.csv", "history.csv", "config.yaml", "manifest.json")


class ResultsDirError(LossbenchError):
    """The results directory cannot be used as asked (busy, or holds another experiment)."""


class Lock:
    def __init__(self, out: Path):
        self.path = out / LOCK
        self.fd: int | None = None

    def acquire(self) -> "Lock":
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise ResultsDirError(f"{self.path.parent}: another `lossbench run` is writing here ({holder}); "
                                  "wait for it to finish, or use --out for a different directory") from None
        os.ftruncate(fd, 0)
        since = datetime.now(timezone.utc).isoformat(timespec="seconds")
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {since}\n".encode())
        self.fd = fd
        return self

    def __enter__(self) -> "Lock":
        return self if self.fd is not None else self.acquire()

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing releases the flock; the file stays, harmlessly
            self.fd = None


RECORD = re.compile(r"^[0-9a-f]{12}\.json$")  # a run id: nothing else in records/ is ours
RECORD_TMP = re.compile(r"^\.[0-9a-f]{12}\.json\..+\.tmp$")  # what atomic_write leaves of one, if killed


def records(out: Path) -> list[Path]:
    d = out / RECORDS
    return [p for p in d.iterdir() if RECORD.match(p.name)] if d.is_dir() else []


def sweep_temporaries(out: Path) -> None:
    """Remove what a killed writer left mid-`atomic_write` (called with the lock held:
    nobody else is writing). Such a file was never renamed, so it was never a result.
    Only our own temporaries: `.<file we write>.<random>.tmp`."""
    for name in OWNED:
        for p in out.glob(f".{name}.*.tmp"):
            p.unlink(missing_ok=True)
    if (out / RECORDS).is_dir():
        for p in (out / RECORDS).iterdir():
            if RECORD_TMP.match(p.name):
                p.unlink(missing_ok=True)


def check_owned(out: Path) -> None:
    """Never overwrite what `lossbench run` did not write: a directory holding a file we
    would write (config.yaml, runs.csv, ...) must be one of ours, with our manifest."""
    try:
        ours = "lossbench" in json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError, TypeError):
        ours = False
    clash = [n for n in OWNED if (out / n).exists()]
    if clash and not ours:
        raise ResultsDirError(f"{out}: holds {', '.join(clash)} that lossbench did not write; "
                              "choose another --out (lossbench writes config.yaml, runs.csv, history.csv, "
                              "manifest.json and records/)")


def clear(out: Path) -> None:
    """`--fresh`: forget every recorded run (called with the lock held)."""
    for p in records(out):
        p.unlink()
    for name in OWNED:
        (out / name).unlink(missing_ok=True)


def previous_run_ids(out: Path) -> set[str]:
    """The runs the directory was made for: the manifest's plan, or failing that the records."""
    man = out / "manifest.json"
    if man.is_file():
        try:
            ids = json.loads(man.read_text()).get("run_ids")
            if ids is not None:
                return set(ids)
        except (OSError, ValueError):
            pass
    return {p.stem for p in records(out)}


def check_compatible(out: Path, config: dict, run_ids: list[str]) -> None:
    """Refuse a directory holding another experiment, unless the new config only adds runs
    (a wider grid, more seeds): every run planned before is still planned now."""
    dropped = previous_run_ids(out) - set(run_ids)
    if not dropped:
        return
    try:
        old = yaml.safe_load((out / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        old = None
    what = config_diff(old, config) if isinstance(old, dict) else ""
    raise ResultsDirError(
        f"{out}: holds results of a different config ({what or f'{len(dropped)} recorded runs are not in this one'}); "
        "only adding grid values or seeds may reuse it. Use --fresh to start over, or --out for a new directory")


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
