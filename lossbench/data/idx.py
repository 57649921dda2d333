"""MNIST-format (IDX) datasets: find the four files, download them if absent, verify, parse, cache.

Where the files are looked for, first hit wins (a directory counts only if it holds all
four, each plain or .gz, under the upstream name `train-images-idx3-ubyte` or Kaggle's
`train-images.idx3-ubyte`):
  1. the `path` option (if given, it must hold them: no silent fallback);
  2. $LOSSBENCH_DATA/<name>;
  3. the cache, $LOSSBENCH_CACHE/<name> (default ~/.cache/lossbench/<name>);
  4. system directories, e.g. Debian's dataset-fashion-mnist package.
Otherwise the files are downloaded into the cache, each checked against a pinned size and
SHA-256. Every file, local or downloaded, goes through the same strict IDX validation, and
its decompressed content must be the pinned one (CONTENT): gzip bytes differ between
copies (Debian re-gzips Fashion-MNIST) but the content does not, and a dataset's name
then always means the same data, whatever directory it came from. That is what lets a
run's identity name MNIST by its name, not by its path.

`prepare` does all of this once, before a sweep trains: after the first parse the
decoded uint8 arrays are saved as .npy in the cache, keyed by the source files' paths,
sizes and mtimes, so later loads (every run, every worker) skip gzip and parsing.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import os
import struct
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np

from lossbench.data.base import DATASETS, Raw, check_labels
from lossbench.errors import DataError
from lossbench.registry import Check, Optional, Text

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

# Pinned (size, sha256) of each downloadable file; downloads that differ are rejected.
SPECS = {
    "mnist": {
        "train-images-idx3-ubyte.gz": (9912422, "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
        "train-labels-idx1-ubyte.gz": (28881, "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
        "t10k-images-idx3-ubyte.gz": (1648877, "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
        "t10k-labels-idx1-ubyte.gz": (4542, "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": (26421880, "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
        "train-labels-idx1-ubyte.gz": (29515, "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
        "t10k-images-idx3-ubyte.gz": (4422102, "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
        "t10k-labels-idx1-ubyte.gz": (5148, "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
    },
}
# Pinned sha256 of each file's decompressed content (the IDX bytes), checked on every parse.
# MNIST's match the MD5s in ../shared/data/README.md; Fashion-MNIST's are Debian's
# dataset-fashion-mnist package's, which re-gzips the upstream files.
CONTENT = {
    "mnist": {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
}
MIRRORS = {
    "mnist": ["https://ossci-datasets.s3.amazonaws.com/mnist/",
              "https://storage.googleapis.com/cvdf-datasets/mnist/"],
    "fashion_mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
}
# Examples per split; the reader refuses anything else (and never allocates for more).
EXPECTED_COUNTS = {
    "mnist": {"train": 60000, "t10k": 10000},
    "fashion_mnist": {"train": 60000, "t10k": 10000},
}
SYSTEM_DIRS = {"fashion_mnist": ["/usr/share/datasets/fashion-mnist"]}

TIMEOUT = 30.0  # seconds without data before a mirror counts as failed
CHUNK = 1 << 20
SHAPE = (28, 28)
N_CLASSES = 10
CACHE_VERSION = 2  # bump when the decoded-array format changes (2: content verified before saving)
_FILE_MODE = 0o644  # mkstemp creates 0600; a shared cache of public data must be readable
_MAGIC = {"images": (2051, 3), "labels": (2049, 1)}  # (magic number, dimensions)


# ---------------------------------------------------------------- reading

def read_idx(path, kind: str, max_count: int, shape=SHAPE) -> np.ndarray:
    """Parse one IDX file, plain or gzip, into uint8 (n, *shape) images or (n,) labels.

    The header's count must be <= max_count and the payload is read with a cap of its
    announced size + 1 byte, so neither a lying header nor a gzip bomb can make us
    allocate more than the expected dataset.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            is_gzip = f.read(2) == b"\x1f\x8b"  # sniff, don't trust the extension
        with (gzip.open(path, "rb") if is_gzip else path.open("rb")) as f:
            return _parse(f, path, kind, max_count, tuple(shape))
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: cannot read IDX {kind} file: {e}") from None


def _parse(f, path: Path, kind: str, max_count: int, shape: tuple) -> np.ndarray:
    magic_expected, ndim = _MAGIC[kind]
    header = f.read(4)
    if len(header) < 4:
        raise DataError(f"{path}: too short for an IDX {kind} header ({len(header)} bytes)")
    (magic,) = struct.unpack(">I", header)
    if magic >> 16 != 0 or magic & 0xFF != ndim:
        raise DataError(f"{path}: magic number {magic} (0x{magic:08x}) is not an IDX {kind} "
                        f"file (expected {magic_expected})")
    if (magic >> 8) & 0xFF != 0x08:
        raise DataError(f"{path}: element type 0x{(magic >> 8) & 0xFF:02x}, "
                        "only unsigned bytes (0x08) are supported")
    header = f.read(4 * ndim)
    if len(header) < 4 * ndim:
        raise DataError(f"{path}: too short for an IDX {kind} header ({4 + len(header)} bytes)")
    count, *item_shape = struct.unpack(f">{ndim}I", header)
    item_shape = tuple(item_shape)
    if count > max_count:
        raise DataError(f"{path}: header announces {count} {kind}, expected {max_count}")
    if kind == "images" and item_shape != shape:
        raise DataError(f"{path}: images are {item_shape[0]}x{item_shape[1]}, "
                        f"expected {shape[0]}x{shape[1]}")
    size = count * int(np.prod(item_shape, dtype=np.int64))
    data = f.read(size + 1)
    if len(data) < size:
        raise DataError(f"{path}: truncated, header announces {count} {kind} ({size} bytes) "
                        f"but only {len(data)} bytes follow")
    if len(data) > size:
        raise DataError(f"{path}: more data than the header's {count} {kind} ({size} bytes)")
    return np.frombuffer(data, np.uint8).reshape((count,) + item_shape)


def read_split(images_path, labels_path, count: int, name: str | None = None, split: str = "train"):
    """(images uint8 (n, 784), labels uint8 (n,)) of one split, checked to be consistent
    and, given the dataset's `name`, to be its pinned content."""
    images = read_idx(images_path, "images", count)
    labels = read_idx(labels_path, "labels", count)
    if name is not None:
        verify(name, f"{split}-images-idx3-ubyte", images_path, "images", images)
        verify(name, f"{split}-labels-idx1-ubyte", labels_path, "labels", labels)
    if len(images) != len(labels):
        raise DataError(f"{images_path} holds {len(images)} images but {labels_path} "
                        f"holds {len(labels)} labels")
    if len(images) != count:
        raise DataError(f"{images_path}: {len(images)} images, expected {count}")
    check_labels(str(labels_path), labels, N_CLASSES)
    return images.reshape(count, -1), labels


def content_sha256(kind: str, array: np.ndarray) -> str:
    """sha256 of the IDX file a parsed array came from: the reader accepts exactly one
    header per array (magic, count, dimensions), so this is the decompressed file's hash."""
    magic, _ = _MAGIC[kind]
    header = struct.pack(f">I{array.ndim}I", magic, *array.shape)
    return hashlib.sha256(header + np.ascontiguousarray(array).tobytes()).hexdigest()


def verify(name: str, stem: str, path, kind: str, array: np.ndarray) -> None:
    """Refuse a file whose content is not the pinned content of `name`'s `stem`."""
    expected = CONTENT.get(name, {}).get(stem)
    if expected is None:
        return
    got = content_sha256(kind, array)
    if got == expected:
        return
    other = [n for n, pins in CONTENT.items() if n != name and pins.get(stem) == got]
    what = f"it is {other[0]}'s {stem}" if other else f"its content's sha256 is {got}, expected {expected}"
    raise DataError(f"{path}: not {name}'s {stem}: {what}")


# ---------------------------------------------------------------- finding

def cache_root() -> Path:
    env = os.environ.get("LOSSBENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lossbench"


def cache_dir(name: str) -> Path:
    return cache_root() / name


def names_of(stem: str) -> list[str]:
    """The file names `stem` is found under, in order of preference: upstream's and
    Kaggle's (train-images.idx3-ubyte), each plain or gzipped."""
    kaggle = stem.replace("-idx", ".idx")
    return [stem, f"{stem}.gz", kaggle, f"{kaggle}.gz"]


def _files_in(directory: Path) -> dict[str, Path] | None:
    """{stem: path} if the directory holds all four files (plain preferred), else None."""
    found = {}
    for stem in FILES:
        for candidate in (directory / n for n in names_of(stem)):
            if candidate.is_file():
                found[stem] = candidate
                break
        else:
            return None
    return found


def find_files(name: str, path=None) -> dict[str, Path] | None:
    """The four files from the first place that has them all, or None (download needed)."""
    if path is not None:
        directory = Path(path).expanduser()
        found = _files_in(directory)
        if found is None:  # an explicit path is a promise: falling back would hide typos
            raise DataError(f"dataset.path: must be a directory holding the four files {', '.join(FILES)} "
                            f"(plain or .gz), got {str(path)!r}")
        return found
    for directory in search_dirs(name):
        found = _files_in(directory)
        if found:
            return found
    return None


def search_dirs(name: str) -> list[Path]:
    """Where `name`'s files are looked for when no path is given, in order."""
    dirs = []
    if os.environ.get("LOSSBENCH_DATA"):
        dirs.append(Path(os.environ["LOSSBENCH_DATA"]).expanduser() / name)
    dirs.append(cache_dir(name))
    return dirs + [Path(d) for d in SYSTEM_DIRS.get(name, ())]


def check_headers(name: str, files: dict[str, Path]) -> None:
    """A cheap check of found files (what `validate` does without decoding 50 MB): each
    is an IDX file of the right kind and size, announcing the expected count."""
    counts = EXPECTED_COUNTS[name]
    for stem, path in files.items():
        kind = "images" if "images" in stem else "labels"
        magic, ndim = _MAGIC[kind]
        try:
            with path.open("rb") as f:
                is_gzip = f.read(2) == b"\x1f\x8b"
            with (gzip.open(path, "rb") if is_gzip else path.open("rb")) as f:
                header = f.read(4 + 4 * ndim)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: cannot read IDX {kind} file: {e}") from None
        count = counts[stem.split("-")[0]]
        expected = struct.pack(f">I{ndim}I", magic, count, *(SHAPE if kind == "images" else ()))
        if header != expected:
            raise DataError(f"{path}: not an IDX {kind} file of {count} {kind}"
                            + (" of 28x28" if kind == "images" else "") + " (its header differs)")


def inventory() -> list[dict]:
    """Every MNIST-format dataset: where its files are found (if anywhere), their sizes,
    and the decoded arrays in the cache; for `lossbench data list`."""
    out = []
    for name in KNOWN:
        try:
            files = find_files(name)
        except DataError:
            files = None
        decoded = sorted(cache_dir(name).glob("decoded-*.npy")) if cache_dir(name).is_dir() else []
        out.append({"name": name, "dir": str(next(iter(files.values())).parent) if files else None,
                    "files_bytes": sum(p.stat().st_size for p in files.values()) if files else 0,
                    "decoded_bytes": sum(p.stat().st_size for p in decoded), "cache": str(cache_dir(name))})
    return out


# ---------------------------------------------------------------- downloading

def mirror_urls(value) -> list[str] | None:
    """Base URLs from a list or a comma-separated string; None unless all are http(s)."""
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        return None
    urls = [v.strip() for v in value if v.strip()]
    return urls if urls and all(u.startswith(("http://", "https://")) for u in urls) else None


# The one check of a mirror list, for the `mirrors` option and $LOSSBENCH_MIRRORS alike.
MIRROR_LIST = Check(lambda v: mirror_urls(v) is not None,
                    "a list of http(s) base URLs or a comma-separated string of them", "http(s) URLs")


def parse_mirrors(value, source: str) -> list[str]:
    MIRROR_LIST.check(source, value)
    return mirror_urls(value)


def download(name: str, mirrors: list[str], on_event=None) -> dict[str, Path]:
    """Fetch the missing files into the cache; one DataError if a file fails everywhere.

    `on_event("download", dataset=, file=, url=, done=, total=)` reports progress in bytes
    (done=0 when a file starts, done=total when it is complete)."""
    target = cache_dir(name)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"{name}: cannot create cache directory {target}: {e}") from None
    for filename, (size, sha256) in SPECS[name].items():
        stem = filename.removesuffix(".gz")
        if (target / filename).is_file() or (target / stem).is_file():
            continue  # fetched by an earlier, interrupted run
        tried = []
        for base in mirrors:
            url = base.rstrip("/") + "/" + filename
            problem = _fetch(url, target / filename, size, sha256, _progress(on_event, name, filename, url, size))
            if problem is None:
                break
            tried.append(f"{url} ({problem})")
        else:
            looked = ", ".join(str(d) for d in search_dirs(name))
            raise DataError(
                f"{name}: not found locally (looked in {looked}) and could not download {filename}; tried "
                + ("; ".join(tried) if tried else "no mirrors (none configured)")
                + f". Put {', '.join(f + '.gz' for f in FILES)} (plain or .gz) in {target} by hand "
                f"(or in $LOSSBENCH_DATA/{name}, or give the dataset option path: <dir>), "
                "or set LOSSBENCH_MIRRORS to working base URLs")
    return _files_in(target)


def _progress(on_event, name: str, filename: str, url: str, total: int):
    if on_event is None:
        return None
    return lambda done: on_event("download", dataset=name, file=filename, url=url, done=done, total=total)


class _Rejected(Exception):
    pass


def _fetch(url: str, dest: Path, size: int, sha256: str, progress=None) -> str | None:
    """Download url to dest if it is exactly the pinned file; else the reason it is not.

    Bytes go to a temp file beside dest and are renamed only after the checks, so dest
    is never partial and a failure leaves nothing behind.
    """
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), _FILE_MODE)
            _stream(url, out, size, sha256, progress)
        os.replace(tmp, dest)
        return None
    except _Rejected as e:
        return str(e)
    except urllib.error.HTTPError as e:
        e.close()
        return f"HTTP {e.code} {e.reason}"
    except urllib.error.URLError as e:
        return f"cannot connect: {e.reason}"
    except (OSError, http.client.HTTPException, ValueError) as e:
        return f"{type(e).__name__}: {e}"
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _stream(url: str, out, size: int, sha256: str, progress=None) -> None:
    digest, got = hashlib.sha256(), 0
    progress = progress or (lambda done: None)
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) != size:
            raise _Rejected(f"server announces {declared} bytes, expected {size}")
        progress(0)
        # http.client returns b"" (no exception) when a Content-Length response is cut
        # short, so the byte count below is what catches a dropped connection.
        while chunk := response.read(CHUNK):
            got += len(chunk)
            if got > size:
                raise _Rejected(f"more than the expected {size} bytes")
            digest.update(chunk)
            out.write(chunk)
            if got < size:
                progress(got)
    if got != size:
        raise _Rejected(f"connection closed after {got} of {size} bytes")
    if digest.hexdigest() != sha256:
        raise _Rejected(f"sha256 {digest.hexdigest()} does not match the pinned {sha256}")
    progress(size)


# ---------------------------------------------------------------- decoded-array cache

_PARTS = ("x_train", "y_train", "x_test", "y_test")


def _cache_key(files: dict[str, Path]) -> str:
    sources = []
    for p in files.values():
        st = p.stat()
        sources.append([str(p.resolve()), st.st_size, st.st_mtime_ns])
    blob = json.dumps([CACHE_VERSION, sources]).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _load_decoded(name: str, key: str, counts: dict) -> list[np.ndarray] | None:
    directory = cache_dir(name)
    try:
        arrays = [np.load(directory / f"decoded-{key}-{part}.npy", allow_pickle=False)
                  for part in _PARTS]
    except (OSError, ValueError, EOFError):
        return None  # absent or damaged: parse again
    n_pixels = SHAPE[0] * SHAPE[1]
    expected = [(counts["train"], n_pixels), (counts["train"],),
                (counts["t10k"], n_pixels), (counts["t10k"],)]
    if any(a.dtype != np.uint8 or a.shape != s for a, s in zip(arrays, expected)):
        return None
    return arrays


def _save_decoded(name: str, key: str, arrays: list[np.ndarray]) -> None:
    directory = cache_dir(name)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for part, array in zip(_PARTS, arrays):
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".decoded-", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as out:
                    os.fchmod(out.fileno(), _FILE_MODE)
                    np.save(out, array, allow_pickle=False)
                os.replace(tmp, directory / f"decoded-{key}-{part}.npy")
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        for old in directory.glob("decoded-*.npy"):  # arrays of replaced source files
            if not old.name.startswith(f"decoded-{key}-"):
                old.unlink(missing_ok=True)
    except OSError:
        pass  # the cache only saves time; a read-only cache must not break loading


# ---------------------------------------------------------------- loaders

def load_arrays(name: str, path=None, mirrors=None, on_event=None) -> list[np.ndarray]:
    """uint8 [x_train (n, 784), y_train, x_test, y_test] of an IDX dataset: found or
    downloaded, verified, and decoded into the cache if it was not already."""
    if mirrors is not None:
        mirrors = mirror_urls(mirrors)  # checked by the registry's constraint
    files = find_files(name, path)
    if files is None:
        if mirrors is None:
            env = os.environ.get("LOSSBENCH_MIRRORS")
            mirrors = parse_mirrors(env, "LOSSBENCH_MIRRORS") if env else MIRRORS[name]
        files = download(name, mirrors, on_event)
    counts = EXPECTED_COUNTS[name]
    key = _cache_key(files)
    arrays = _load_decoded(name, key, counts)
    if arrays is None:
        x_train, y_train = read_split(files["train-images-idx3-ubyte"],
                                      files["train-labels-idx1-ubyte"], counts["train"], name, "train")
        x_test, y_test = read_split(files["t10k-images-idx3-ubyte"],
                                    files["t10k-labels-idx1-ubyte"], counts["t10k"], name, "t10k")
        arrays = [x_train, y_train, x_test, y_test]
        _save_decoded(name, key, arrays)
    return arrays


def _raw(name: str, path, mirrors) -> Raw:
    x_train, y_train, x_test, y_test = load_arrays(name, path, mirrors)
    # uint8 pixels with divisor 255: `load` turns them into float32 in [0, 1] after splitting.
    return Raw("classification", N_CLASSES, x_train, y_train.astype(np.int64),
               x_test, y_test.astype(np.int64), x_divisor=255.0, image_shape=(1, *SHAPE))


# What the loaders return, known without reading any file (validation sizes models with it).
KNOWN = {name: ("classification", SHAPE[0] * SHAPE[1], N_CLASSES, (1, *SHAPE)) for name in ("mnist", "fashion_mnist")}
IDX_OPTIONS = dict(path=Optional(Text()), mirrors=Optional(MIRROR_LIST))


@DATASETS.register("mnist", **IDX_OPTIONS)
def mnist(seed, *, path=None, mirrors=None) -> Raw:
    """Handwritten digits: 60000 train + 10000 test 28x28 grey images, 10 classes."""
    return _raw("mnist", path, mirrors)


@DATASETS.register("fashion_mnist", **IDX_OPTIONS)
def fashion_mnist(seed, *, path=None, mirrors=None) -> Raw:
    """Zalando clothing images in MNIST's format: 60000 + 10000, 10 classes."""
    return _raw("fashion_mnist", path, mirrors)
