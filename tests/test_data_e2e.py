"""Datasets end to end: prepared once before a sweep or refused once, found under the names
people have, and named in run ids by their content, not their path.

Real MNIST (../shared/data/mnist) in real `lossbench` processes where it matters; downloads
only from an HTTP server on 127.0.0.1 (test_idx's), never the network.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import realdata
from test_idx import fake, isolated, server  # noqa: F401  (fixtures: small pinned MNIST files, a local mirror)
from typer.testing import CliRunner

import lossbench
from lossbench import data
from lossbench.cli import app
from lossbench.data import idx
from lossbench.errors import DataError
from lossbench.sweep.config import load_experiment
from lossbench.sweep.spec import run_id

ROOT = Path(lossbench.__file__).resolve().parents[1]
REAL = realdata.DATA
needs_mnist = realdata.needs_mnist
DEAD = "http://127.0.0.1:9/"  # nothing listens on the discard port: a download fails at once
runner = CliRunner()


def lossbench_cli(*args, tmp_path: Path, data_dir: Path | None = None, mirrors: str = DEAD):
    """`python -m lossbench ARGS` in a fresh process with its own cache and no network."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOSSBENCH_")}
    env.update(PYTHONPATH=str(ROOT), LOSSBENCH_CACHE=str(tmp_path / "cache"), LOSSBENCH_MIRRORS=mirrors,
               HOME=str(tmp_path / "home"), no_proxy="*", NO_PROXY="*")
    if data_dir is not None:
        env["LOSSBENCH_DATA"] = str(data_dir)
    return subprocess.run([sys.executable, "-m", "lossbench", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=600)


def mnist_config(tmp_path: Path, extra: str = "", name: str = "m") -> Path:
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(f"""
name: {name}
dataset: {{name: mnist, limit: 600, val_fraction: 0.2{extra}}}
model: {{name: mlp, hidden: [16]}}
loss: cross_entropy
optimizer: {{name: adam, lr: 0.001}}
train: {{epochs: 1, batch_size: 64}}
seeds: [0, 1]
""")
    return cfg


# ---------------------------------------------------------------- item 1: prepared once or refused once

@needs_mnist
def test_run_without_the_data_refuses_once_writes_nothing_and_later_trains_everything(tmp_path):
    cfg = mnist_config(tmp_path)
    out = tmp_path / "out"
    r = lossbench_cli("run", cfg, "--out", out, "-j", "2", tmp_path=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: mnist: not found locally (looked in ")
    assert f"tried {DEAD}train-images-idx3-ubyte.gz (cannot connect" in lines[0]
    assert f"in {tmp_path / 'cache' / 'mnist'} by hand" in lines[0]  # where to put the files
    assert not out.exists()  # nothing written, so no run is recorded failed
    # with the files where lossbench looks, the same command trains every run (none is skipped as recorded)
    r = lossbench_cli("run", cfg, "--out", out, "-j", "2", tmp_path=tmp_path, data_dir=REAL)
    assert r.returncode == 0, r.stderr
    assert f"mnist: {REAL / 'mnist'}" in r.stderr and "training 2 on 2 workers" in r.stdout
    assert (pd.read_csv(out / "runs.csv").status == "ok").all()


@needs_mnist
def test_validate_says_a_download_would_be_needed_and_downloads_nothing(tmp_path):
    cfg = mnist_config(tmp_path)
    r = lossbench_cli("validate", cfg, tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "data: mnist: not found locally" in r.stdout and "a download would be needed" in r.stdout
    assert not (tmp_path / "cache").exists()
    r = lossbench_cli("validate", cfg, tmp_path=tmp_path, data_dir=REAL)
    assert f"data: mnist: found in {REAL / 'mnist'}" in r.stdout
    # an explicit path holding files that are not IDX is refused by validate, without decoding anything
    bad = tmp_path / "bad"
    bad.mkdir()
    for stem in idx.FILES:
        (bad / stem).write_bytes(b"\0" * 64)
    r = lossbench_cli("validate", mnist_config(tmp_path, f", path: {bad}"), tmp_path=tmp_path)
    assert r.returncode == 2 and r.stderr.startswith(f"error: {bad / 'train-images-idx3-ubyte'}: not an IDX images")


@needs_mnist
def test_kaggle_names_uncompressed_are_found(tmp_path):
    kaggle = tmp_path / "kaggle"
    kaggle.mkdir()
    for stem in idx.FILES:  # train-images.idx3-ubyte, as Kaggle's MNIST archive has them
        with gzip.open(REAL / "mnist" / f"{stem}.gz") as src:
            (kaggle / stem.replace("-idx", ".idx")).write_bytes(src.read())
    out = tmp_path / "out"
    r = lossbench_cli("run", mnist_config(tmp_path, f", path: {kaggle}"), "--out", out, "-j", "1",
                      tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (pd.read_csv(out / "runs.csv").status == "ok").all()


def test_download_happens_once_before_training_with_progress(tmp_path, fake, server, monkeypatch):  # noqa: F811
    _, blobs = fake
    monkeypatch.setenv("LOSSBENCH_MIRRORS", server.mirror("m", blobs))
    cfg = mnist_config(tmp_path).read_text().replace("limit: 600, ", "")
    (tmp_path / "m.yaml").write_text(cfg)
    r = runner.invoke(app, ["run", str(tmp_path / "m.yaml"), "--out", str(tmp_path / "out"), "-j", "1"])
    assert r.exit_code == 0, r.output
    assert sorted(server.requests) == sorted(f"/m/{n}" for n in blobs)  # each file once, for both runs
    for n in blobs:
        assert f"downloading {n} from {server.base}/m/{n}" in r.output
    first_training = r.output.index("training 2")
    assert all(r.output.index(f"downloading {n}") < first_training for n in blobs)


def test_lossbench_data_fetch_path_list(tmp_path, fake, server, monkeypatch):  # noqa: F811
    _, blobs = fake
    monkeypatch.setenv("LOSSBENCH_MIRRORS", server.mirror("m", blobs))
    shared = tmp_path / "shared-cache"
    r = runner.invoke(app, ["data", "path", "mnist"])
    assert r.exit_code == 2 and "`lossbench data fetch mnist` downloads it into" in r.output
    r = runner.invoke(app, ["data", "fetch", "mnist", "--cache", str(shared)])
    assert r.exit_code == 0, r.output
    assert f"mnist: ready, files in {shared / 'mnist'}" in r.output
    assert len(list((shared / "mnist").glob("decoded-*.npy"))) == 4  # decoded once, for every run and worker
    monkeypatch.setenv("LOSSBENCH_CACHE", str(shared))
    r = runner.invoke(app, ["data", "path", "mnist"])
    assert r.exit_code == 0 and r.output.strip() == str(shared / "mnist")
    r = runner.invoke(app, ["data", "list"])
    assert r.exit_code == 0 and f"mnist          {shared / 'mnist'}" in r.output and "decoded" in r.output
    r = runner.invoke(app, ["data", "fetch", "mnst"])
    assert r.exit_code == 2 and "(did you mean 'mnist'?)" in r.output


# ---------------------------------------------------------------- item 2: identity by content

@needs_mnist
def test_fashion_mnist_given_mnist_files_is_refused(tmp_path):
    with pytest.raises(DataError, match=r"not fashion_mnist's train-images-idx3-ubyte: it is mnist's"):
        data.load("fashion_mnist", path=str(REAL / "mnist"))
    cfg = tmp_path / "f.yaml"
    cfg.write_text(mnist_config(tmp_path).read_text().replace("name: mnist,", f"name: fashion_mnist, path: "
                                                                              f"{REAL / 'mnist'},"))
    r = lossbench_cli("run", cfg, "--out", tmp_path / "out", tmp_path=tmp_path)
    assert r.returncode == 2 and "it is mnist's" in r.stderr and not (tmp_path / "out").exists()


@needs_mnist
def test_mnist_at_another_path_resumes(tmp_path):
    out = tmp_path / "out"
    r = lossbench_cli("run", mnist_config(tmp_path, f", path: {REAL / 'mnist'}"), "--out", out, "-j", "1",
                      tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    moved = tmp_path / "elsewhere"
    shutil.copytree(REAL / "mnist", moved)
    r = lossbench_cli("run", mnist_config(tmp_path, f", path: {moved}"), "--out", out, "-j", "1", tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "2 of 2 runs already recorded (skipped); training 0" in r.stdout


def csv_config(tmp_path: Path, path: Path) -> Path:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""
name: c
dataset: {{name: csv, path: {path}}}
model: {{name: mlp, hidden: [8]}}
loss: cross_entropy
optimizer: {{name: adam, lr: 0.01}}
train: {{epochs: 3, batch_size: 16}}
seeds: [0, 1]
""")
    return cfg


def test_csv_moved_resumes_and_changed_content_never_reuses_a_record(tmp_path):
    table = tmp_path / "a" / "table.csv"
    table.parent.mkdir()
    table.write_text("x1,x2,y\n" + "".join(f"{i % 7},{i % 5},{i % 2}\n" for i in range(80)))
    out = tmp_path / "out"
    r = lossbench_cli("run", csv_config(tmp_path, table), "--out", out, "-j", "1", tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    records = sorted(p.name for p in (out / "records").iterdir())
    moved = tmp_path / "b" / "renamed.csv"
    moved.parent.mkdir()
    shutil.move(table, moved)
    r = lossbench_cli("run", csv_config(tmp_path, moved), "--out", out, "-j", "1", tmp_path=tmp_path)
    assert r.returncode == 0 and "2 of 2 runs already recorded (skipped); training 0" in r.stdout
    # other data under the same name and path: refused, and the records of the first data stay
    moved.write_text(moved.read_text().replace("\n3,3,1\n", "\n3,3,0\n", 1))
    r = lossbench_cli("run", csv_config(tmp_path, moved), "--out", out, "-j", "1", tmp_path=tmp_path)
    assert r.returncode == 2
    assert "holds results of a different config (the dataset's content changed: dataset.sha256 " in r.stderr
    assert sorted(p.name for p in (out / "records").iterdir()) == records


def test_a_directory_written_before_data_identity_is_still_shown_and_resumed(tmp_path):
    """0.1's manifest has no `data`: show reads only the tables, and a config without a
    path has the run ids it had, so the same command resumes it."""
    out = tmp_path / "out"
    cfg = ROOT / "configs" / "quickstart.yaml"
    args = ["run", str(cfg), "--out", str(out), "--set", "seeds=[0]", "--set", "train.epochs=2", "-j", "1"]
    assert runner.invoke(app, args).exit_code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["data"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    r = runner.invoke(app, ["show", str(out)])
    assert r.exit_code == 0 and "9 runs: 9 ok" in r.output
    r = runner.invoke(app, args)
    assert r.exit_code == 0 and "9 of 9 runs already recorded" in r.output


def test_run_ids_without_a_path_are_what_they_were(tmp_path):
    """Configs that name no file keep their run ids: the identity of generated data and of
    MNIST by name is the config itself (what 0.1 hashed)."""
    exp = load_experiment(ROOT / "configs" / "quickstart.yaml")
    for spec in exp.runs:
        assert spec.run_id == run_id(spec.config, spec.seed)
    assert json.loads(json.dumps(exp.data)) == [exp.config["dataset"]]
