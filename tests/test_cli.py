from typer.testing import CliRunner

from lossbench import __version__
from lossbench.cli import app

runner = CliRunner()


def test_version():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"lossbench {__version__}"


def test_list_reads_the_registries():
    r = runner.invoke(app, ["list", "optimizers"], env={"COLUMNS": "200"})
    assert r.exit_code == 0
    for name in ("sgd", "gd", "momentum", "rmsprop", "adagrad", "adadelta", "adam", "adamw", "adamax", "nadam", "radam"):
        assert f" {name} " in r.output
    assert "betas=(0.9, 0.999)" in r.output and "lr=0.002" in r.output  # adamax's default
    r = runner.invoke(app, ["list"], env={"COLUMNS": "200"})
    assert r.exit_code == 0
    assert all(k in r.output for k in ("datasets", "fashion_mnist", "huber", "delta=1.0", "warmup_cosine", "mlp"))


def test_list_unknown_kind_exits_2():
    r = runner.invoke(app, ["list", "lossses"])
    assert r.exit_code == 2 and "unknown kind 'lossses' (did you mean 'losses'?)" in r.output
    assert "Traceback" not in r.output


def test_list_shows_docstrings_verbatim():
    r = runner.invoke(app, ["list", "losses"], env={"COLUMNS": "250"})
    assert "x[y_i] + x[j]" in r.output  # not eaten as Rich markup
