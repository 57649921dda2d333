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
# registry's own module (not from lossbench.api.REGISTRIES, which the command itself uses).
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
    assert "betas=[0.9, 0.999] (2 values, each in [0, 1))" in r.output and "lr=0.002 (> 0)" in r.output  # adamax
    r = runner.invoke(app, ["list", "losses"], env={"COLUMNS": "200"})
    assert "delta=1.0 (> 0)" in r.output


def test_list_optimizers_says_every_section_takes_param_groups():
    r = runner.invoke(app, ["list", "optimizers"], env={"COLUMNS": "200"})
    assert "Every optimizer section also takes param_groups" in r.output
    assert "param_groups" not in runner.invoke(app, ["list", "losses"], env={"COLUMNS": "200"}).output


def test_list_unknown_kind_exits_2():
    r = runner.invoke(app, ["list", "lossses"])
    assert r.exit_code == 2
    assert r.output == ("error: list KIND: must be one of ['datasets', 'models', 'losses', 'optimizers', "
                        "'schedules', 'train'], got 'lossses' (did you mean 'losses'?)\n")
    assert "Traceback" not in r.output


def _list_cells(output: str) -> dict[str, tuple[str, str]]:
    """{name: (options text, summary text)} from the Rich tables, wrapped lines rejoined."""
    rows: dict[str, list[list[str]]] = {}
    name = None
    for line in output.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) != 3:
            name = None
            continue
        name = cells[0] or name
        rows.setdefault(name, []).append(cells[1:])
    return {n: (" ".join(r[0] for r in rs if r[0]), " ".join(r[1] for r in rs if r[1])) for n, rs in rows.items()}


def test_list_shows_each_summary_verbatim_and_the_allowed_ranges():
    from lossbench.api import REGISTRIES

    for kind, reg in REGISTRIES.items():
        r = runner.invoke(app, ["list", kind])
        assert r.exit_code == 0
        cells = _list_cells(r.output)
        assert sorted(cells) == reg.names()
        for name in reg.names():  # not cut, not eaten as Rich markup
            assert cells[name][1] == reg.doc(name).splitlines()[0], name
    options = _list_cells(runner.invoke(app, ["list", "losses"]).output)["cross_entropy"][0]
    assert options == "label_smoothing=0.0 (in [0, 1])"
    options = _list_cells(runner.invoke(app, ["list", "models"]).output)["mlp"][0]
    assert "hidden=[128] (integer >= 1, or a list of them)" in options
    train = _list_cells(runner.invoke(app, ["list", "train"]).output)
    assert sorted(train) == ["prune", "search", "search.space.KEY", "target", "train", "train.early_stopping"]
    assert "reduction_factor=4 (integer >= 2)" in train["prune"][0]
    assert "method='halton' (halton|random)" in train["search"][0] and "scale='linear'" in train["search.space.KEY"][0]
    assert "batch_size=128 (integer >= 1 or full)" in train["train"][0]
    assert "patience=5 (integer >= 1)" in train["train.early_stopping"][0]
    assert "metric=required (string)" in train["target"][0]


def test_the_command_list_shows_each_summary_as_one_wrapped_sentence():
    from typer.testing import CliRunner

    from lossbench.cli import app

    r = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "80"})
    lines = [line.strip("│ ") for line in r.output.split("Commands")[1].splitlines()]
    # wrapped at the box's edge, not where the docstring's lines end ("...epochs/steps/time" | "to target")
    assert any("epochs/steps/time to target" in line for line in lines), r.output
