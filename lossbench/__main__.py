"""`python -m lossbench` is the `lossbench` command."""

from .cli import app

app(prog_name="lossbench")
