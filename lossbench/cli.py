"""The `lossbench` command. It only parses arguments, calls the library and prints."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Compare loss functions and optimizers on small NumPy networks.")


def _version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"lossbench {__version__}")
        raise typer.Exit()


def _fail(msg: str, code: int = 2) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code)


@app.callback()
def main(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = None,
) -> None:
    """Compare loss functions and optimizers on small NumPy networks."""


def _console():
    from rich.console import Console

    console = Console()
    if not console.is_terminal:  # piped or captured: don't squeeze tables into 80 columns
        console.width = 160
    return console


def _experiment(config: Path, overrides: list[str]):
    from .config import load_experiment
    from .errors import LossbenchError

    try:
        return load_experiment(config, overrides or ())
    except LossbenchError as e:
        _fail(str(e))


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="Experiment YAML file.")],
    out: Annotated[Optional[Path], typer.Option("--out", help="Results directory (default: results/<name>/).")] = None,
    set_: Annotated[Optional[List[str]], typer.Option("--set", help="Override a key before validation: --set optimizer.lr=0.1 (repeatable).")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", "-j", min=1, help="Worker processes (default: one per core; 1 trains in this process).")] = None,
    executor: Annotated[str, typer.Option("--executor", help="local (this machine) or dask (a Dask cluster, with --address).")] = "local",
    address: Annotated[Optional[str], typer.Option("--address", help="Dask scheduler address, e.g. tcp://10.0.0.5:8786.")] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Forget the runs already recorded in the results directory and start over.")] = False,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Train runs recorded as failed again (others are kept).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and list the runs; train nothing.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
) -> None:
    """Train every run of the grid not yet recorded and print the convergence summary.

    Re-running the same command resumes: recorded runs are skipped. Ctrl-C stops cleanly,
    keeps every finished run and exits 130. Exit code 1 if any run failed."""

    import signal

    from .api import default_out, load
    from .errors import LossbenchError
    from .execute import run_experiment
    from .report import Progress, print_preview, print_summary

    if executor not in ("local", "dask"):
        _fail(f"--executor: unknown executor {executor!r}; choose local or dask")
    if address and executor != "dask":
        _fail("--address: only used with --executor dask")
    exp = _experiment(config, set_)
    out_dir = out if out is not None else default_out(exp.name)
    console = _console()
    if dry_run:
        print_preview(console, exp, out_dir)
        return

    def stop(signum, frame):  # SIGTERM (kill, a batch scheduler) stops as cleanly as Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    with Progress(console, enabled=not quiet and console.is_terminal) as progress:
        def on_event(kind: str, **info) -> None:
            if kind == "start" and not quiet:
                where = f"{info['workers']} worker{'s' * (info['workers'] != 1)}" if info["workers"] else "the Dask cluster"
                resumed = f"{info['done']} of {info['total']} runs already recorded (skipped); " if info["done"] else ""
                console.print(f"{out_dir}: {resumed}training {info['todo']} on {where}")
            progress.on_event(kind, **info)

        try:
            outcome = run_experiment(exp, out_dir, on_event, workers=workers, executor=executor, address=address,
                                     fresh=fresh, retry_failed=retry_failed)
        except LossbenchError as e:
            _fail(str(e))
        except KeyboardInterrupt:
            outcome = None
    res = load(out_dir)
    print_summary(console, res.summary, res.runs, f"{exp.name} — {out_dir}", exp.target)
    if outcome is None:
        console.print(f"[yellow]interrupted[/yellow]: {len(res.runs)} of {len(exp.runs)} runs recorded; "
                      "run the same command again to train the rest")
        raise typer.Exit(130)
    if (res.runs.status == "failed").any():
        raise typer.Exit(1)


@app.command()
def validate(
    config: Annotated[Path, typer.Argument(help="Experiment YAML file.")],
    set_: Annotated[Optional[List[str]], typer.Option("--set", help="Override a key before validation (repeatable).")] = None,
) -> None:
    """Validate a config and preview its expanded grid."""

    from .api import default_out
    from .report import print_preview

    exp = _experiment(config, set_)
    print_preview(_console(), exp, default_out(exp.name))


@app.command()
def show(results_dir: Annotated[Path, typer.Argument(help="A results directory written by `lossbench run`.")]) -> None:
    """Print the summary of finished results again."""

    from .api import load
    from .errors import LossbenchError
    from .report import print_summary

    try:
        res = load(results_dir)
    except (LossbenchError, OSError, ValueError, KeyError) as e:
        _fail(str(e))
    import json

    target = json.loads((results_dir / "manifest.json").read_text()).get("target")
    print_summary(_console(), res.summary, res.runs, str(results_dir), target)


@app.command("list")
def list_(
    kind: Annotated[Optional[str], typer.Argument(help="datasets, models, losses, optimizers or schedules (default: all)")] = None,
) -> None:
    """The catalog: every dataset, model, loss, optimizer and schedule with its hyperparameters and defaults."""
    from rich.table import Table

    from rich.markup import escape

    from .catalog import KINDS, catalog
    from .registry import did_you_mean

    if kind is not None and kind not in KINDS:
        _fail(f"unknown kind {kind!r}{did_you_mean(kind, KINDS)}; choose one of {list(KINDS)}")
    console = _console()
    for k in [kind] if kind else KINDS:
        table = Table(title=k, title_justify="left")
        table.add_column("name", style="bold cyan")
        table.add_column("hyperparameters (defaults)")
        table.add_column("what it is")
        for name, params, doc in catalog(k):
            table.add_row(escape(name), escape(", ".join(f"{p}={v!r}" if v != "required" else f"{p} (required)" for p, v in params.items())), escape(doc))
        console.print(table)
