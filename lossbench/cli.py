"""The `lossbench` command. It only parses arguments, calls the library and prints."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Compare loss functions and optimizers on small NumPy networks.")


def _version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"lossbench {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = None,
) -> None:
    """Compare loss functions and optimizers on small NumPy networks."""


@app.command("list")
def list_(
    kind: Annotated[Optional[str], typer.Argument(help="datasets, models, losses, optimizers or schedules (default: all)")] = None,
) -> None:
    """The catalog: every dataset, model, loss, optimizer and schedule with its hyperparameters and defaults."""
    from rich.console import Console
    from rich.table import Table

    from .catalog import KINDS, catalog
    from .registry import did_you_mean

    if kind is not None and kind not in KINDS:
        typer.echo(f"error: unknown kind {kind!r}{did_you_mean(kind, KINDS)}; choose one of {list(KINDS)}", err=True)
        raise typer.Exit(2)
    console = Console()
    for k in [kind] if kind else KINDS:
        table = Table(title=k, title_justify="left", show_lines=False)
        table.add_column("name", style="bold cyan")
        table.add_column("hyperparameters (defaults)")
        table.add_column("what it is")
        for name, params, doc in catalog(k):
            table.add_row(name, ", ".join(f"{p}={v!r}" if v != "required" else f"{p} (required)" for p, v in params.items()), doc)
        console.print(table)
