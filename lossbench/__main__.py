"""`python -m lossbench` is the `lossbench` command."""

from lossbench.cli import app

app(prog_name="lossbench")
