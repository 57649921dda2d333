"""`--executor dask` against a real scheduler and workers started on 127.0.0.1."""

import socket
import subprocess
import sys
import time

import pandas as pd
import pytest
from typer.testing import CliRunner

from lossbench.cli import app

distributed = pytest.importorskip("distributed")
import dask  # noqa: E402  (installed with distributed)

runner = CliRunner()

CONFIG = """
name: dask
dataset: {name: spirals, n_samples: 600}
model: {name: mlp, hidden: [16, 16], activation: tanh}
loss: cross_entropy
optimizer: {name: adam, lr: 0.01}
train: {epochs: 8, batch_size: 64}
seeds: [0, 1]
grid:
  - {optimizer.name: [adam, rmsprop, nadam], optimizer.lr: [0.01, 0.003]}
  - {loss: [mse], optimizer: [{name: sgd, lr: 1.0e+8}]}
"""
TIMING = ["wall_time_s", "time_to_target_s", "stack_size"]  # how a run was executed, not what it computed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    """`dask scheduler` and `dask worker` as the README tells users to start them."""
    address = f"tcp://127.0.0.1:{free_port()}"
    port = address.rsplit(":", 1)[1]
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", port, "--no-dashboard"], **quiet)]
    procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nworkers", "2",
                                   "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"], **quiet))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with distributed.Client(address, timeout="2s") as c:
                    c.wait_for_workers(2, timeout=60)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def test_dask_cluster_gives_the_same_tables_as_local_workers(tmp_path, cluster):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG)
    r = runner.invoke(app, ["run", str(cfg), "--out", str(tmp_path / "dask"), "--executor", "dask",
                            "--address", cluster])
    assert r.exit_code == 0, r.output
    assert "training 14 on the Dask cluster" in r.output and "14 runs: 12 ok, 2 diverged, 0 failed" in r.output
    assert runner.invoke(app, ["run", str(cfg), "--out", str(tmp_path / "local"), "-q"]).exit_code == 0
    for table, timing in (("runs.csv", TIMING), ("history.csv", ["elapsed_s"])):
        d = pd.read_csv(tmp_path / "dask" / table).drop(columns=timing, errors="ignore")
        loc = pd.read_csv(tmp_path / "local" / table).drop(columns=timing, errors="ignore")
        pd.testing.assert_frame_equal(d, loc)
    # resuming on the cluster skips what is recorded, like a local run
    r = runner.invoke(app, ["run", str(cfg), "--out", str(tmp_path / "dask"), "--executor", "dask",
                            "--address", cluster, "--set", "seeds=[0, 1, 2]"])
    assert r.exit_code == 0 and "14 of 21 runs already recorded (skipped); training 7" in r.output


def test_pruned_sweeps_on_the_cluster_decide_as_local_ones(tmp_path, cluster):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG + "prune: {metric: val_accuracy, reduction_factor: 2}\n")
    r = runner.invoke(app, ["run", str(cfg), "--out", str(tmp_path / "dask"), "--executor", "dask",
                            "--address", cluster])
    assert r.exit_code == 0, r.output
    assert "14 runs: 2 ok, 10 pruned, 2 diverged, 0 failed" in r.output  # 7 trials: 3, 1 go on; sgd diverged
    assert runner.invoke(app, ["run", str(cfg), "--out", str(tmp_path / "local"), "-q", "-j", "1"]).exit_code == 0
    for table, timing in (("runs.csv", TIMING), ("history.csv", ["elapsed_s"])):
        d = pd.read_csv(tmp_path / "dask" / table).drop(columns=timing, errors="ignore")
        loc = pd.read_csv(tmp_path / "local" / table).drop(columns=timing, errors="ignore")
        pd.testing.assert_frame_equal(d, loc)


def test_an_unreachable_scheduler_is_one_line_and_writes_nothing(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG)
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        r = runner.invoke(app, ["run", str(cfg), "--out", str(tmp_path / "o"), "--executor", "dask",
                                "--address", address])
    assert r.exit_code == 2
    assert r.output.startswith(f"error: cannot reach the Dask scheduler at {address}") and r.output.count("\n") == 1
    assert not (tmp_path / "o" / "runs.csv").exists() and not (tmp_path / "o" / "config.yaml").exists()


def test_dask_without_address_is_refused(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG)
    r = runner.invoke(app, ["run", str(cfg), "--out", str(tmp_path / "o"), "--executor", "dask"])
    assert r.exit_code == 2 and "needs --address" in r.output


def test_a_cluster_that_cannot_be_used_leaves_the_directory_alone(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG.replace("seeds: [0, 1]", "seeds: [0]").replace("epochs: 8", "epochs: 1"))
    out = tmp_path / "o"
    assert runner.invoke(app, ["run", str(cfg), "--out", str(out), "-q", "-j", "1"]).exit_code == 0
    before = sorted(p.name for p in (out / "records").iterdir())
    for args, message in ((["--executor", "dask", "--fresh"], "needs --address"),
                          (["--executor", "dask", "--address", "http://127.0.0.1:1", "--fresh"], "--address: expected tcp://HOST:PORT")):
        r = runner.invoke(app, ["run", str(cfg), "--out", str(out), *args])
        assert r.exit_code == 2 and message in r.output and r.output.count("\n") == 1
        assert sorted(p.name for p in (out / "records").iterdir()) == before  # --fresh did not run
    r = runner.invoke(app, ["run", str(cfg), "--out", str(tmp_path / "new"), "--executor", "dask"])
    assert r.exit_code == 2 and not (tmp_path / "new").exists()
