import re

from typer.testing import CliRunner

from lossbench import __version__, data, losses, optimizers, schedules
from lossbench.cli import app
from lossbench.engine import nn

runner = CliRunner()


def test_version():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"lossbench {__version__}"


# `lossbench list KIND` for each kind, and the registry it must show, taken from the
# registry's own module (not from lossbench.catalog, which the command itself uses).
LISTED = {
    "datasets": data.DATASETS,
    "models": nn.MODELS,
    "losses": losses.LOSSES,
    "optimizers": optimizers.OPTIMIZERS,
    "schedules": schedules.SCHEDULES,
}


def name_column(output: str) -> list[str]:
    """The first cell of each table row (continuation rows have it empty)."""
    return re.findall(r"^│ (\S+) +│", output, flags=re.MULTILINE)


def test_list_shows_every_registered_name():
    everything = runner.invoke(app, ["list"], env={"COLUMNS": "200"})
    assert everything.exit_code == 0, everything.output
    for kind, registry in LISTED.items():
        r = runner.invoke(app, ["list", kind], env={"COLUMNS": "200"})
        assert r.exit_code == 0, r.output
        assert sorted(name_column(r.output)) == registry.names(), kind
        assert r.output in everything.output, f"`list` without a kind leaves out {kind}"


def test_list_shows_defaults():
    r = runner.invoke(app, ["list", "optimizers"], env={"COLUMNS": "200"})
    assert "betas=(0.9, 0.999)" in r.output and "lr=0.002" in r.output  # adamax's default
    r = runner.invoke(app, ["list", "losses"], env={"COLUMNS": "200"})
    assert "delta=1.0" in r.output


def test_list_unknown_kind_exits_2():
    r = runner.invoke(app, ["list", "lossses"])
    assert r.exit_code == 2 and "unknown kind 'lossses' (did you mean 'losses'?)" in r.output
    assert "Traceback" not in r.output


def test_list_shows_docstrings_verbatim():
    r = runner.invoke(app, ["list", "losses"], env={"COLUMNS": "250"})
    assert "x[y_i] + x[j]" in r.output  # not eaten as Rich markup
