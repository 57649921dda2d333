"""Issue 10, item 5: damaged records, a full disk, paths that are not results: one line, never a traceback."""

import errno

import pandas as pd
import pytest
from typer.testing import CliRunner

from lossbench.cli import app
from lossbench.sweep import store

runner = CliRunner()

QUICK = """
name: quick
dataset: {name: moons, n_samples: 200}
model: {name: mlp, hidden: [8]}
loss: cross_entropy
optimizer: {name: sgd, lr: 0.1}
train: {epochs: 3}
seeds: [0, 1]
grid: {optimizer.lr: [0.1, 0.2]}
"""


def run(cfg, out, *args):
    return runner.invoke(app, ["run", str(cfg), "--out", str(out), "-j", "1", *args])


@pytest.mark.parametrize("damage", ['{"run_id": ', "", '["not", "a", "record"]'])
def test_a_damaged_record_is_set_aside_and_its_run_trains_again(tmp_path, damage):
    cfg, out = tmp_path / "c.yaml", tmp_path / "o"
    cfg.write_text(QUICK)
    assert run(cfg, out).exit_code == 0
    before = pd.read_csv(out / "runs.csv")
    record = sorted((out / "records").iterdir())[0]
    record.write_text(damage)
    r = run(cfg, out)
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].startswith(f"warning: {record}: damaged record (")
    assert f"set aside as {record.name}.damaged" in lines[0]
    assert "3 of 4 runs already recorded (skipped); training 1" in r.output
    assert (out / "records" / f"{record.name}.damaged").read_text() == damage  # the user's bytes, not deleted
    after = pd.read_csv(out / "runs.csv")
    assert len(after) == 4 and after.status.eq("ok").all()
    cols = ["run_id", "final_val_loss", "best_val_accuracy"]
    pd.testing.assert_frame_equal(before[cols], after[cols])  # the same run, trained again
    assert run(cfg, out).output.count("warning") == 0  # set aside once, not again and again


def test_a_full_disk_mid_sweep_is_one_line_and_keeps_finished_records(tmp_path, monkeypatch):
    cfg, out = tmp_path / "c.yaml", tmp_path / "o"
    cfg.write_text(QUICK)
    real, written = store.atomic_write, []

    def filling_up(path, text):
        if len(written) >= 2:  # two records fit, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, text)
        if path.parent.name == "records":
            written.append(path)

    monkeypatch.setattr(store, "atomic_write", filling_up)
    r = run(cfg, out, "-q")
    assert r.exit_code == 1
    assert r.output == (f"error: {out}: no space left on the device while writing results; the 2 finished runs in "
                        f"{out / 'records'} are kept. Free some space and run the same command again to train the "
                        "rest\n")
    assert sorted(p.name for p in (out / "records").iterdir()) == sorted(p.name for p in written)
    monkeypatch.setattr(store, "atomic_write", real)
    r = run(cfg, out)
    assert r.exit_code == 0 and "2 of 4 runs already recorded (skipped); training 2" in r.output


@pytest.mark.parametrize("command", ["show", "compare", "plot"])
def test_a_missing_path_is_not_confused_with_a_directory_that_is_not_results(tmp_path, command):
    r = runner.invoke(app, [command, str(tmp_path / "nope")])
    assert r.exit_code == 2 and r.output == f"error: {tmp_path / 'nope'}: no such directory\n"
    r = runner.invoke(app, [command, str(tmp_path)])
    assert r.exit_code == 2 and r.output.startswith(f"error: {tmp_path}: not a lossbench results directory")
    (tmp_path / "f.csv").write_text("a,b\n")
    r = runner.invoke(app, [command, str(tmp_path / "f.csv")])
    assert r.exit_code == 2 and "is a file" in r.output and r.output.count("\n") == 1
