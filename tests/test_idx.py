"""IDX reader, finder, downloader (against a local HTTP server) and decoded-array cache."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import os
import re
import struct
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import realdata

from lossbench import data
from lossbench.data import idx
from lossbench.errors import ConfigError, DataError

N_TRAIN, N_TEST = 100, 20
STEMS = idx.FILES
REAL_FASHION = realdata.FASHION


# ---------------------------------------------------------------- helpers

def idx_images(images: np.ndarray, magic=2051) -> bytes:
    n, rows, cols = images.shape
    return struct.pack(">IIII", magic, n, rows, cols) + images.astype(np.uint8).tobytes()


def idx_labels(labels: np.ndarray, magic=2049) -> bytes:
    return struct.pack(">II", magic, len(labels)) + labels.astype(np.uint8).tobytes()


def fake_arrays(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(N_TRAIN) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(N_TEST) % 10).astype(np.uint8),
    }


def encode(arrays) -> dict[str, bytes]:
    """{stem: raw IDX bytes}."""
    return {stem: (idx_images(a) if "images" in stem else idx_labels(a))
            for stem, a in arrays.items()}


def gz(payload: bytes) -> bytes:
    return gzip.compress(payload, mtime=0)


def write_dir(directory: Path, arrays, compress=True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for stem, payload in encode(arrays).items():
        if compress:
            (directory / f"{stem}.gz").write_bytes(gz(payload))
        else:
            (directory / stem).write_bytes(payload)
    return directory


def files_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


# ---------------------------------------------------------------- fixtures

@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Never touch the user's cache, env-configured data, or any non-loopback mirror."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LOSSBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("LOSSBENCH_DATA", raising=False)
    monkeypatch.delenv("LOSSBENCH_MIRRORS", raising=False)
    for var in ("no_proxy", "NO_PROXY"):  # the local server must not go through a proxy
        monkeypatch.setenv(var, "*")
    monkeypatch.setattr(idx, "MIRRORS", {"mnist": [], "fashion_mnist": []})
    return tmp_path


@pytest.fixture
def fake(monkeypatch):
    """Small valid MNIST-format files, pinned as if they were the real MNIST."""
    arrays = fake_arrays()
    blobs = {f"{stem}.gz": gz(payload) for stem, payload in encode(arrays).items()}
    specs = {name: (len(b), hashlib.sha256(b).hexdigest()) for name, b in blobs.items()}
    monkeypatch.setitem(idx.SPECS, "mnist", specs)
    monkeypatch.setitem(idx.CONTENT, "mnist", {stem: hashlib.sha256(payload).hexdigest()
                                               for stem, payload in encode(arrays).items()})
    monkeypatch.setitem(idx.EXPECTED_COUNTS, "mnist", {"train": N_TRAIN, "t10k": N_TEST})
    return arrays, blobs


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache" / "mnist"


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.requests.append(self.path)
        route = self.server.routes.get(self.path)
        if route is None:
            self.send_error(404)
            return
        mode, body = route
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode == "drop":  # promise the whole file, send half, hang up
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.routes, httpd.requests = {}, []
    base = f"http://127.0.0.1:{httpd.server_address[1]}"

    def mirror(prefix: str, blobs: dict[str, bytes], mode="ok") -> str:
        for name, body in blobs.items():
            httpd.routes[f"/{prefix}/{name}"] = (mode, body)
        return f"{base}/{prefix}/"

    httpd.mirror, httpd.base = mirror, base
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def corrupt(blobs):
    out = {}
    for name, body in blobs.items():
        b = bytearray(body)
        b[len(b) // 2] ^= 0xFF
        out[name] = bytes(b)
    return out


def assert_fake_loaded(arrays, got):
    x_train, y_train, x_test, y_test = got
    np.testing.assert_array_equal(x_train, arrays["train-images-idx3-ubyte"].reshape(N_TRAIN, -1))
    np.testing.assert_array_equal(y_train, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(x_test, arrays["t10k-images-idx3-ubyte"].reshape(N_TEST, -1))
    np.testing.assert_array_equal(y_test, arrays["t10k-labels-idx1-ubyte"])


# ---------------------------------------------------------------- reader

@pytest.mark.parametrize("compress", [True, False])
def test_reader_parses_gz_and_raw(tmp_path, compress):
    arrays = fake_arrays()
    d = write_dir(tmp_path / "d", arrays, compress=compress)
    suffix = ".gz" if compress else ""
    images, labels = idx.read_split(d / f"train-images-idx3-ubyte{suffix}",
                                    d / f"train-labels-idx1-ubyte{suffix}", N_TRAIN)
    assert images.shape == (N_TRAIN, 784) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, arrays["train-images-idx3-ubyte"].reshape(N_TRAIN, 784))
    np.testing.assert_array_equal(labels, arrays["train-labels-idx1-ubyte"])


@pytest.mark.parametrize("compress", [True, False])
def test_reader_rejects_truncated_payload(tmp_path, compress):
    payload = idx_images(fake_arrays()["train-images-idx3-ubyte"])[:-10]
    f = tmp_path / ("x.gz" if compress else "x")
    f.write_bytes(gz(payload) if compress else payload)
    with pytest.raises(DataError, match="truncated") as e:
        idx.read_idx(f, "images", N_TRAIN)
    assert str(f) in str(e.value)


def test_reader_rejects_truncated_header(tmp_path):
    f = tmp_path / "x"
    f.write_bytes(struct.pack(">II", 2051, 5))
    with pytest.raises(DataError, match="too short"):
        idx.read_idx(f, "images", 10)


def test_reader_rejects_truncated_gzip_stream(tmp_path):
    f = tmp_path / "x.gz"
    f.write_bytes(gz(idx_images(fake_arrays()["train-images-idx3-ubyte"]))[:-100])
    with pytest.raises(DataError, match=str(f)):
        idx.read_idx(f, "images", N_TRAIN)


def test_reader_rejects_wrong_magic(tmp_path):
    f = tmp_path / "labels-as-images"
    f.write_bytes(idx_labels(np.zeros(5)))  # magic 2049 where 2051 is expected
    with pytest.raises(DataError, match="magic number 2049") as e:
        idx.read_idx(f, "images", 10)
    assert str(f) in str(e.value)


def test_reader_rejects_non_byte_element_type(tmp_path):
    f = tmp_path / "x"
    f.write_bytes(idx_images(np.zeros((2, 28, 28)), magic=0x0D03))
    with pytest.raises(DataError, match="element type 0x0d"):
        idx.read_idx(f, "images", 10)


def test_reader_rejects_wrong_image_size(tmp_path):
    f = tmp_path / "x"
    f.write_bytes(idx_images(np.zeros((2, 27, 28))))
    with pytest.raises(DataError, match="27x28, expected 28x28"):
        idx.read_idx(f, "images", 10)


def test_reader_refuses_header_announcing_too_many(tmp_path):
    f = tmp_path / "x"
    f.write_bytes(struct.pack(">IIII", 2051, 2**31, 28, 28) + b"\0" * 784)
    with pytest.raises(DataError, match="announces 2147483648 images, expected 100"):
        idx.read_idx(f, "images", 100)


def test_reader_rejects_trailing_data(tmp_path):
    f = tmp_path / "x"
    f.write_bytes(idx_labels(np.zeros(5)) + b"\0")
    with pytest.raises(DataError, match="more data than"):
        idx.read_idx(f, "labels", 5)


def test_gzip_bomb_is_capped(tmp_path):
    # A valid header for 100 images, then 64 MiB of zeros (compresses to ~64 KiB).
    f = tmp_path / "bomb.gz"
    with gzip.open(f, "wb") as out:
        out.write(idx_images(np.zeros((100, 28, 28))))
        zeros = bytes(1 << 20)
        for _ in range(64):
            out.write(zeros)
    assert f.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="more data than"):
            idx.read_idx(f, "images", 100)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"decompressed {peak} bytes: the read is not capped"


def test_reader_rejects_garbage_gzip(tmp_path):
    f = tmp_path / "x.gz"
    f.write_bytes(b"\x1f\x8b" + b"not really gzip" * 10)
    with pytest.raises(DataError, match="cannot read IDX images file"):
        idx.read_idx(f, "images", 10)


@pytest.mark.parametrize("n_images,labels,count,pattern", [
    (100, np.zeros(99), 100, "holds 100 images but .* holds 99 labels"),
    (99, np.zeros(99), 100, "99 images, expected 100"),
    (3, np.array([0, 10, 2]), 3, r"labels must be in 0\.\.9"),
], ids=["mismatched-counts", "unexpected-count", "out-of-range-labels"])
def test_split_rejects_bad_pairs(tmp_path, n_images, labels, count, pattern):
    images_path, labels_path = tmp_path / "i", tmp_path / "l"
    images_path.write_bytes(idx_images(np.zeros((n_images, 28, 28))))
    labels_path.write_bytes(idx_labels(labels))
    with pytest.raises(DataError, match=pattern):
        idx.read_split(images_path, labels_path, count)


# ---------------------------------------------------------------- finder

def test_path_option_is_used_without_download(tmp_path, fake, server):
    arrays, _ = fake
    d = write_dir(tmp_path / "mine", arrays, compress=False)
    got = idx.load_arrays("mnist", path=str(d), mirrors=[server.base + "/never/"])
    assert_fake_loaded(arrays, got)
    assert server.requests == []


def test_path_option_without_files_is_an_error(tmp_path, fake):
    with pytest.raises(DataError, match=r"^dataset\.path: must be a directory holding the four files ") as e:
        idx.load_arrays("mnist", path=str(tmp_path / "nowhere"))
    assert "nowhere" in str(e.value)


def test_lossbench_data_env_is_searched(tmp_path, fake, monkeypatch):
    arrays, _ = fake
    write_dir(tmp_path / "shared" / "mnist", arrays)
    monkeypatch.setenv("LOSSBENCH_DATA", str(tmp_path / "shared"))
    assert_fake_loaded(arrays, idx.load_arrays("mnist"))


def test_system_dir_is_searched(tmp_path, fake, monkeypatch):
    arrays, _ = fake
    write_dir(tmp_path / "usr-share", arrays)
    monkeypatch.setitem(idx.SYSTEM_DIRS, "mnist", [str(tmp_path / "usr-share")])
    assert_fake_loaded(arrays, idx.load_arrays("mnist"))


def test_nothing_found_and_no_mirrors(fake, cache):
    with pytest.raises(DataError, match="no mirrors") as e:
        idx.load_arrays("mnist")
    assert str(cache) in str(e.value)  # says where to put the files by hand


def test_mirror_option_validation():
    assert idx.parse_mirrors(" http://a/ , https://b/,", "x") == ["http://a/", "https://b/"]
    why = "must be a list of http(s) base URLs or a comma-separated string of them"
    with pytest.raises(ConfigError, match=rf"^x: {re.escape(why)}, got \["):
        idx.parse_mirrors(["https://ok/", "file:///etc/"], "x")
    with pytest.raises(ConfigError, match=rf"^LOSSBENCH_MIRRORS: {re.escape(why)}, got 42$"):
        idx.parse_mirrors(42, "LOSSBENCH_MIRRORS")
    with pytest.raises(ConfigError, match=rf"^dataset\.mirrors: {re.escape(why)}, got 'ftp://x/'$"):
        data.load("mnist", mirrors="ftp://x/")  # the option and the variable share the one check


# ---------------------------------------------------------------- downloader

def test_download_from_good_mirror(fake, server, cache):
    arrays, blobs = fake
    good = server.mirror("good", blobs)
    assert_fake_loaded(arrays, idx.load_arrays("mnist", mirrors=[good]))
    assert [n for n in files_in(cache) if n.endswith(".gz")] == sorted(blobs)
    assert not [n for n in files_in(cache) if n.startswith(".")]  # no temp files left
    for name, body in blobs.items():
        assert (cache / name).read_bytes() == body


def test_404_then_good_mirror(fake, server, cache):
    arrays, blobs = fake
    good = server.mirror("good", blobs)
    assert_fake_loaded(arrays, idx.load_arrays("mnist", mirrors=f"{server.base}/gone/,{good}"))
    first = "train-images-idx3-ubyte.gz"
    assert server.requests[:2] == [f"/gone/{first}", f"/good/{first}"]


def test_download_through_load(fake, server):
    arrays, blobs = fake
    ds = data.load("mnist", mirrors=[server.mirror("good", blobs)], normalize="none",
                   val_fraction=0.1)
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (90, 10, 20)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    np.testing.assert_allclose(ds.x_test, arrays["t10k-images-idx3-ubyte"].reshape(20, -1) / 255,
                               rtol=1e-6)
    assert ds.x_train.min() >= 0 and ds.x_train.max() <= 1


def test_mirrors_from_environment(fake, server, monkeypatch):
    arrays, blobs = fake
    monkeypatch.setenv("LOSSBENCH_MIRRORS", server.mirror("env", blobs))
    assert_fake_loaded(arrays, idx.load_arrays("mnist"))
    assert all(r.startswith("/env/") for r in server.requests)


def test_corrupted_payload_is_rejected_and_leaves_nothing(fake, server, cache):
    _, blobs = fake
    bad = server.mirror("bad", corrupt(blobs))
    with pytest.raises(DataError, match="sha256 .* does not match"):
        idx.load_arrays("mnist", mirrors=[bad])
    assert files_in(cache) == []


def test_corrupted_then_good_mirror(fake, server, cache):
    arrays, blobs = fake
    bad, good = server.mirror("bad", corrupt(blobs)), server.mirror("good", blobs)
    assert_fake_loaded(arrays, idx.load_arrays("mnist", mirrors=[bad, good]))
    assert not [n for n in files_in(cache) if n.startswith(".")]


def test_dropped_connection_is_rejected(fake, server, cache):
    arrays, blobs = fake
    drop = server.mirror("drop", blobs, mode="drop")
    with pytest.raises(DataError, match="connection closed after"):
        idx.load_arrays("mnist", mirrors=[drop])
    assert files_in(cache) == []
    good = server.mirror("good", blobs)
    assert_fake_loaded(arrays, idx.load_arrays("mnist", mirrors=[drop, good]))


def test_wrong_size_is_rejected(fake, server, cache):
    _, blobs = fake
    longer = server.mirror("long", {n: b + b"extra" for n, b in blobs.items()})
    with pytest.raises(DataError, match="announces .* bytes, expected"):
        idx.load_arrays("mnist", mirrors=[longer])
    assert files_in(cache) == []


def test_all_mirrors_failing_lists_every_url(fake, server, cache):
    _, blobs = fake
    urls = [server.base + "/gone/", server.mirror("bad", corrupt(blobs)),
            server.mirror("drop", blobs, mode="drop")]
    with pytest.raises(DataError) as e:
        idx.load_arrays("mnist", mirrors=urls)
    message = str(e.value)
    first = "train-images-idx3-ubyte.gz"
    assert f"{urls[0]}{first} (HTTP 404" in message
    assert f"{urls[1]}{first} (sha256" in message
    assert f"{urls[2]}{first} (connection closed after" in message
    assert str(cache) in message
    assert files_in(cache) == []


# ---------------------------------------------------------------- decoded cache

def test_second_load_uses_decoded_cache(tmp_path, fake, cache, monkeypatch):
    arrays, _ = fake
    src = write_dir(tmp_path / "src", arrays)
    first = idx.load_arrays("mnist", path=src)
    assert len([n for n in files_in(cache) if n.startswith("decoded-")]) == 4

    def no_parsing(*args, **kwargs):
        raise AssertionError("parsed again instead of using the cache")

    monkeypatch.setattr(idx, "read_idx", no_parsing)
    second = idx.load_arrays("mnist", path=src)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_changed_source_invalidates_cache(tmp_path, fake, cache, monkeypatch):
    arrays, _ = fake
    src = write_dir(tmp_path / "src", arrays)
    idx.load_arrays("mnist", path=src)
    old = set(files_in(cache))

    changed = fake_arrays(seed=1)
    write_dir(src, changed)
    later = time.time() + 10  # a distinct mtime even on coarse-grained filesystems
    for p in src.iterdir():
        os.utime(p, (later, later))
    with pytest.raises(DataError, match="not mnist's train-images-idx3-ubyte: its content's sha256 is"):
        idx.load_arrays("mnist", path=src)  # parsed again, and refused: not the pinned content
    monkeypatch.setitem(idx.CONTENT, "mnist", {stem: hashlib.sha256(payload).hexdigest()
                                               for stem, payload in encode(changed).items()})
    assert_fake_loaded(changed, idx.load_arrays("mnist", path=src))
    new = set(files_in(cache))
    assert len(new) == 4 and not new & old  # stale arrays were removed


def test_damaged_cache_falls_back_to_parsing(tmp_path, fake, cache):
    arrays, _ = fake
    src = write_dir(tmp_path / "src", arrays)
    idx.load_arrays("mnist", path=src)
    for p in cache.glob("decoded-*x_train.npy"):
        p.write_bytes(p.read_bytes()[:200])
    assert_fake_loaded(arrays, idx.load_arrays("mnist", path=src))


# ---------------------------------------------------------------- the real thing

@realdata.needs_fashion
def test_real_fashion_mnist(cache):
    ds = data.load("fashion_mnist", val_fraction=0.1, normalize="none")
    assert (ds.x_train.shape, ds.x_val.shape, ds.x_test.shape) == (
        (54000, 784), (6000, 784), (10000, 784))
    assert ds.n_outputs == 10 and ds.task == "classification"
    assert ds.x_train.dtype == np.float32 and ds.x_train.flags.c_contiguous
    assert 0 <= ds.x_train.min() and ds.x_train.max() == 1
    counts = np.bincount(ds.y_train, minlength=10)
    assert counts.min() > 5000 and counts.max() < 5800  # 6000 per class before the val split
    assert np.bincount(ds.y_test).tolist() == [1000] * 10
    assert len(list((cache.parent / "fashion_mnist").glob("decoded-*.npy"))) == 4
    again = data.load("fashion_mnist", val_fraction=0.1, normalize="none")
    np.testing.assert_array_equal(again.x_train, ds.x_train)
