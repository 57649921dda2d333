"""The `lossbench` command. It only parses arguments, calls the library and prints.

Every command runs inside one error boundary (`errors_as_exit_codes`, as spaCy's
`show_validation_error`): a LossbenchError becomes one line `error: <message>` on stderr
and exit code 2 (1 when the Dask scheduler was lost mid-sweep). Any other exception is a
bug and keeps its traceback.

Each command imports the library when it runs, not at start-up: NumPy, pandas and Rich
cost about 0.5 s that `--help` and `--version` should not pay.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from lossbench import __version__
from lossbench.errors import ClusterLost, DiskFull, LossbenchError
from lossbench.registry import Choice

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Compare loss functions and optimizers on small NumPy networks.")


def _fail(msg: str, code: int = 2) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code)


@contextlib.contextmanager
def errors_as_exit_codes() -> Iterator[None]:
    """The CLI's one error boundary: library errors become `error: ...` and an exit code."""
    try:
        yield
    except (ClusterLost, DiskFull) as e:  # finished runs are kept; the sweep stopped, it was not refused
        _fail(str(e), 1)
    except LossbenchError as e:
        _fail(str(e))


def command(*args, **kwargs):
    """`app.command`, with the command's body run inside `errors_as_exit_codes`."""
    def register(f):
        @functools.wraps(f)
        def in_boundary(*a, **k):
            with errors_as_exit_codes():
                return f(*a, **k)
        return app.command(*args, **kwargs)(in_boundary)
    return register


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lossbench {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    """Compare loss functions and optimizers on small NumPy networks."""


def _console():
    from rich.console import Console  # rich only for commands that print tables: --version/--help stay quick

    class Quiet(Console):
        def on_broken_pipe(self) -> None:
            # Rich's default exits; a sweep must keep recording what its workers finish
            self.quiet = True
            _silence_stdout()

    console = Quiet()
    if not console.is_terminal:  # piped or captured: tables at full width, never squeezed into 80 columns
        console.width = 100_000
    return console


def _experiment(config: Path, overrides: list[str] | None):
    from lossbench.sweep.config import load_experiment

    return load_experiment(config, overrides or ())


@command()
def run(
    config: Annotated[Path, typer.Argument(help="Experiment YAML file.")],
    out: Annotated[Path | None, typer.Option("--out", help="Results directory (default: results/<name>/).")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a key before validation: --set optimizer.lr=0.1 (repeatable)."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", "-j", min=1,
            help="Worker processes (default: one per core; 1 trains in this process)."
        ),
    ] = None,
    executor: Annotated[
        str,
        typer.Option("--executor", help="local (this machine) or dask (a Dask cluster, with --address)."),
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option("--address", help="Dask scheduler address, e.g. tcp://10.0.0.5:8786."),
    ] = None,
    fresh: Annotated[
        bool,
        typer.Option("--fresh", help="Forget the runs already recorded in the results directory and start over."),
    ] = False,
    retry_failed: Annotated[
        bool,
        typer.Option("--retry-failed", help="Train runs recorded as failed again (others are kept)."),
    ] = False,
    stack: Annotated[
        str,
        typer.Option("--stack", help="Train runs of one model together as one stacked model: auto (where it is "
                                     "faster: small models), off, or at most N runs per stack."),
    ] = "auto",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and list the runs; train nothing.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
) -> None:
    """Train every run of the grid not yet recorded and print the convergence summary.

    Re-running the same command resumes: recorded runs are skipped. Ctrl-C stops cleanly,
    keeps every finished run and exits 130. Exit code 1 if any run failed."""
    from lossbench.sweep.config import default_out

    _check_executor(executor, address)
    stack_n = _stack_option(stack)
    exp = _experiment(config, set_)
    # pandas and the analysis only for a valid config: a config error is one line, sooner
    from lossbench import api
    from lossbench.analysis.report import print_preview

    out_dir = out if out is not None else default_out(exp.name)
    console = _console()
    if dry_run:
        print_preview(console, exp, out_dir, api.plan(exp, out_dir, workers, fresh, retry_failed))
        return
    signal.signal(signal.SIGTERM, _interrupt)  # kill, a batch scheduler: stop as cleanly as Ctrl-C
    outcome, lost = _train(exp, out_dir, console, quiet, workers=workers, executor=executor, address=address,
                           fresh=fresh, retry_failed=retry_failed, stack=stack_n)
    res = api.load(out_dir)
    if len(res.summary):
        _print_summary(console, res, f"{exp.name} — {out_dir}")
    if outcome is None:
        n = len(exp.runs)
        console.print(f"[yellow]{'interrupted' if lost is None else 'stopped'}[/yellow]: {len(res.runs)} of {n} "
                      f"run{'s' * (n != 1)} recorded; run the same command again to train the rest")
        if lost is not None:
            raise lost  # error: ... and exit 1, at the boundary
        raise typer.Exit(130)
    if (res.runs.status == "failed").any():
        raise typer.Exit(1)


def _check_executor(executor: str, address: str | None) -> None:
    from lossbench.sweep.execute import EXECUTORS

    EXECUTORS.check("--executor", executor)
    if address and executor != "dask":
        raise LossbenchError(f"--address: only used with --executor dask, got {address!r}")


def _stack_option(value: str) -> str | int:
    from lossbench.sweep.stacking import STACK

    stack = int(value) if value.strip().isdigit() else value
    STACK.check("--stack", stack)
    return stack


def _silence_stdout() -> None:
    """Send the rest of stdout to /dev/null: its reader is gone (a closed pipe), and
    nothing the sweep finishes may be lost for want of somewhere to print it."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _train(exp, out_dir: Path, console, quiet: bool, **options):
    """Run the sweep with a progress display: (outcome, None) when it completes, (None, None)
    on Ctrl-C, (None, the error) when the Dask scheduler was lost. Finished runs are
    recorded in all three cases."""
    from lossbench.analysis.report import Progress
    from lossbench.sweep.execute import run_experiment

    with Progress(console, enabled=not quiet and console.is_terminal, lines=not quiet) as progress:
        def on_event(kind: str, **info) -> None:
            try:
                show(kind, **info)
            except BrokenPipeError:  # `lossbench run ... | head`: the reader left, the sweep goes on
                _silence_stdout()

        def show(kind: str, **info) -> None:
            if kind == "set_aside":  # even with --quiet: the user's file was renamed
                typer.echo(f"warning: {info['path']}: damaged record ({info['what']}); set aside as "
                           f"{info['renamed'].name}, and its run trains again", err=True)
            if kind == "start" and not quiet:
                console.print(_start_line(out_dir, info))
            if kind in ("download", "dataset") and not quiet:
                _data_event(kind, info)
            progress.on_event(kind, **info)

        try:
            return run_experiment(exp, out_dir, on_event, **options), None
        except ClusterLost as e:  # finished runs are recorded; say so after the summary
            return None, e
        except KeyboardInterrupt:
            return None, None


def _data_event(kind: str, info: dict) -> None:
    """Datasets being made available before a sweep: one line per file downloaded (a
    percentage counting up on a terminal), and where each dataset was found."""
    import sys

    if kind == "dataset":
        typer.echo(f"{info['name']}: {info['where']}", err=True)
        return
    done, total = info["done"], info["total"]
    line = f"downloading {info['file']} from {info['url']}: {done / 2**20:.1f} of {total / 2**20:.1f} MB"
    if sys.stderr.isatty():
        typer.echo("\r" + line, err=True, nl=done == total)
    elif done == total:
        typer.echo(line, err=True)


def _start_line(out_dir: Path, info: dict) -> str:
    where = f"{info['workers']} worker{'s' * (info['workers'] != 1)}" if info["workers"] else "the Dask cluster"
    resumed = f"{info['done']} of {info['total']} runs already recorded (skipped); " if info["done"] else ""
    return f"{out_dir}: {resumed}training {info['todo']} on {where}"


def _print_summary(console, res, title: str) -> None:
    from lossbench.analysis.report import print_summary

    print_summary(console, res.summary, res.metric, res.runs, title, res.target)


@command()
def validate(
    config: Annotated[Path, typer.Argument(help="Experiment YAML file.")],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a key before validation (repeatable)."),
    ] = None,
) -> None:
    """Validate a config and preview its expanded grid."""

    from lossbench import api, data
    from lossbench.analysis.report import print_preview

    exp = _experiment(config, set_)
    out_dir = api.default_out(exp.name)
    print_preview(_console(), exp, out_dir, api.plan(exp, out_dir))
    for spec in exp.dataset_specs():  # what `run` would find or have to download; nothing is downloaded
        typer.echo(f"data: {data.status(spec)}")


@command()
def show(results_dir: Annotated[Path, typer.Argument(help="A results directory written by `lossbench run`.")]) -> None:
    """Print the summary of finished results again."""
    from lossbench import api

    res = api.load(results_dir)
    console = _console()
    if len(res.summary):
        _print_summary(console, res, str(results_dir))
    if res.planned > len(res.runs):
        console.print(f"[yellow]unfinished[/yellow]: {len(res.runs)} of {res.planned} runs recorded; the figures "
                      "above are from those only. `lossbench run` with the same config trains the rest",
                      highlight=False)


def _cost(cost: str) -> str:
    """--cost time|epochs|steps -> the compare column it names."""
    Choice("time", "epochs", "steps").check("--cost", cost)
    return f"{cost}_to_target"


def _keys(by: list[str] | None) -> list[str] | None:
    return [k.strip() for item in by for k in item.split(",") if k.strip()] if by else None


FORMATS = Choice("table", "csv", "markdown")


@command()
def compare(
    results_dirs: Annotated[
        list[Path],
        typer.Argument(help="One or more results directories (several: one problem each)."),
    ],
    by: Annotated[
        list[str] | None,
        typer.Option(
            "--by",
            help="Group by these runs.csv columns, comma-separated (default: the swept keys, seed excluded)."
        ),
    ] = None,
    metric: Annotated[
        str | None,
        typer.Option(
            "--metric",
            help="val_accuracy, val_loss, train_loss, val_mae, test_accuracy, ... (default: the target's metric)."
        ),
    ] = None,
    target: Annotated[
        float | None,
        typer.Option("--target", help="Target value of the metric for the to-target columns (default: the config's)."),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or markdown.")] = "table",
    profile: Annotated[
        bool,
        typer.Option("--profile", help="Performance profile across the directories instead of the table."),
    ] = False,
    cost: Annotated[
        str,
        typer.Option("--cost", help="What the profile compares: time, epochs or steps to target."),
    ] = "time",
    lr: Annotated[
        bool,
        typer.Option("--lr", help="Learning-rate sensitivity instead of the table (needs optimizer.lr swept)."),
    ] = False,
    hp: Annotated[
        str | None,
        typer.Option("--hp", help="The metric per value of this swept or searched key (--lr is --hp optimizer.lr)."),
    ] = None,
    tolerance: Annotated[
        float,
        typer.Option("--tolerance", min=0.0, help="For --lr: the range of lrs within this fraction of the best."),
    ] = 0.05,
    vs: Annotated[
        list[str] | None,
        typer.Option("--vs", help="KEY=VALUE (repeatable or comma-separated): compare each group with the group "
                                  "that has these values, on the same seeds (e.g. --vs optimizer.name=sgd)."),
    ] = None,
    alpha: Annotated[
        float,
        typer.Option("--alpha", help="For --vs: the significance level of the verdicts (intervals at 1 - alpha)."),
    ] = 0.05,
    resamples: Annotated[
        int, typer.Option("--resamples", min=100, help="Bootstrap resamples for the intervals of IQM and --vs."),
    ] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap: the same seed, the same intervals.")] = 0,
) -> None:
    """Compare groups of runs across seeds: mean ± std and 95% intervals, median and IQM
    with bootstrap intervals, epochs/steps/time to target, loss AUC, ranks; or each group
    against a baseline on paired seeds (--vs), a performance profile (--profile) or lr
    sensitivity (--lr)."""
    from lossbench import api
    from lossbench.analysis import compare as cmp
    from lossbench.analysis import report

    FORMATS.check("--format", fmt)
    cost = _cost(cost)
    if not 0 < alpha < 1:
        raise LossbenchError(f"--alpha: {alpha:g} is not a significance level; give a number between 0 and 1, "
                             "e.g. 0.05")
    if lr and hp not in (None, "optimizer.lr"):
        raise LossbenchError(f"--lr is --hp optimizer.lr; give one of them, got --lr and --hp {hp}")
    hp = "optimizer.lr" if lr else hp
    views = [name for name, on in (("--profile", profile), ("--lr" if lr else "--hp", hp), ("--vs", vs)) if on]
    if len(views) > 1:
        raise LossbenchError(f"{' and '.join(views)} are {'two' if len(views) == 2 else 'three'} different views; "
                             "choose one")
    problems = api.load_problems(results_dirs)
    comparison = cmp.compare_problems(problems, _keys(by), metric, target, resamples, seed)
    against = cmp.parse_vs(vs, comparison.keys) if vs else None
    _notes(comparison, table=not (profile or hp or vs))
    if against:
        view = comparison.versus = cmp.versus(problems, comparison, against, alpha, resamples, seed)
        rich = report.versus_table(view, comparison, alpha, report.width_of(_console())) if fmt == "table" else None
    elif profile:
        if not comparison.with_target:
            raise LossbenchError("--profile needs a target: set one in the configs or give --metric and --target")
        prof = cmp.performance_profile(comparison, cost)
        view = prof.table
        if not prof.solved:
            typer.echo(f"no group reached {comparison.metric} {'≥' if comparison.higher_is_better else '≤'} "
                       f"{', '.join(f'{t:g}' for t in comparison.table['target'].dropna().unique())} on at least "
                       "half its seeds, on any problem: there is no profile to draw. Try an easier --target")
            return
        rich = report.profile_table(view, cost) if fmt == "table" else None
    elif hp:
        view = cmp.lr_sensitivity_all(problems, comparison, tolerance, hp, by is not None)
        rich = report.lr_table(view, comparison.metric, tolerance, hp) if fmt == "table" else None
    else:
        view = comparison.table
        rich = report.compare_table(comparison, report.width_of(_console())) if fmt == "table" else None
    _print_view(view, rich, fmt, comparison)


def _notes(comparison, table: bool = True) -> None:
    """What the reader of a comparison should know: keys pooled, sweeps unfinished."""
    if comparison.pooled:
        typer.echo(f"note: grouped by {', '.join(comparison.keys) or 'nothing'} (the keys every directory sweeps); "
                   f"{', '.join(comparison.pooled)} pooled. Use --by to choose.", err=True)
    for line in comparison.partial:
        typer.echo(f"note: {line} (the sweep is unfinished; `lossbench run` resumes it)", err=True)
    for line in comparison.warnings:
        if table or not line.startswith("loss AUC"):  # the AUC and the curves are in the table only
            typer.echo(f"warning: {line}", err=True)


def _print_view(view, rich, fmt: str, comparison) -> None:
    import pandas as pd

    from lossbench.analysis import compare as cmp
    from lossbench.analysis import report

    if rich is not None:
        _console().print(rich)
        if view is comparison.table or view is comparison.versus:  # CSV has the counts (n, pairs) instead
            for line in comparison.notes:
                typer.echo(f"note: {line}", err=True)
    elif fmt == "csv":
        typer.echo(cmp.flat(view).to_csv(index=False), nl=False)
    elif view is comparison.table:  # Markdown for papers and READMEs: the figures as the terminal shows them
        cols, rows = report.compare_cells(comparison)
        typer.echo(cmp.to_markdown(pd.DataFrame(rows, columns=cols)), nl=False)
    else:
        typer.echo(cmp.to_markdown(cmp.flat(view)), nl=False)


@command()
def plot(
    results_dirs: Annotated[list[Path], typer.Argument(help="A results directory (several for --kind profile).")],
    kind: Annotated[
        str,
        typer.Option("--kind", help="all (four panels), curves, train-val, bars, lr, hp (the metric against "
                                    "--hp), stats (IQM with its bootstrap interval and the median per group), "
                                    "improvement (P(row > column) for every pair of groups), rungs (successive "
                                    "halving: every trial until it was pruned), profile, or path (test "
                                    "functions: the paths over the contour map)."),
    ] = "all",
    hp: Annotated[
        str, typer.Option("--hp", help="For --kind hp: the swept or searched key on the x axis."),
    ] = "optimizer.lr",
    metric: Annotated[
        str | None,
        typer.Option("--metric", help="The metric to plot (default: the target's metric)."),
    ] = None,
    by: Annotated[
        list[str] | None,
        typer.Option("--by", help="Group by these columns, comma-separated (default: the swept keys)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="FILE.png, .svg or .pdf (default: RESULTS_DIR/plot-KIND.png)."),
    ] = None,
    log: Annotated[bool, typer.Option("--log", help="Log scale for losses.")] = False,
    target: Annotated[
        float | None,
        typer.Option("--target", help="Target value of the metric (default: the config's); for --kind profile."),
    ] = None,
    cost: Annotated[str, typer.Option("--cost", help="For --kind profile: time, epochs or steps to target.")] = "time",
    tolerance: Annotated[
        float,
        typer.Option("--tolerance", min=0.0, help="For the lr panel: the range within this fraction of the best."),
    ] = 0.05,
    animate: Annotated[
        Path | None,
        typer.Option("--animate", help="For --kind path: also FILE.gif (or .mp4, with ffmpeg): the paths growing."),
    ] = None,
) -> None:
    """Draw convergence curves (mean ± std band over seeds), training vs validation loss,
    final metric with error bars, lr sensitivity, or a performance profile."""
    from lossbench import api

    path = api.plot(results_dirs, kind, metric, _keys(by), out, log, _cost(cost), tolerance, target, animate, hp)
    typer.echo(f"wrote {path}" + (f" and {animate}" if animate is not None else ""))


@command("lr-find")
def lr_find(
    config: Annotated[Path, typer.Argument(help="Experiment YAML file.")],
    start: Annotated[float, typer.Option("--start", help="The first step's learning rate.")] = 1e-7,
    end: Annotated[float, typer.Option("--end", help="The last step's learning rate.")] = 10.0,
    steps: Annotated[int, typer.Option("--steps", help="Minibatch steps (fewer if the loss diverges).")] = 100,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a key before validation: --set optimizer.name=adam (repeatable)."),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="The figure (default: lr_find-<name>.png here).")] = None,
    suggest: Annotated[
        list[str] | None,
        typer.Option("--suggest", help="valley (default), steep, minimum; comma-separated for several."),
    ] = None,
    write_grid: Annotated[
        bool, typer.Option("--write-grid", help="Print a grid around each suggestion (x 1/3, 1, 3) to paste."),
    ] = False,
) -> None:
    """Learning-rate range test per optimizer: raise the rate exponentially each step from
    the initial weights, smooth the loss, stop when it diverges, suggest a rate (fastai's rules)."""
    from lossbench import api
    from lossbench.analysis import plots
    from lossbench.analysis.report import lr_find_table
    from lossbench.sweep.lrfind import SHORT

    rules = tuple(_keys(suggest) or ["valley"])
    report = api.lr_find(config, set_ or (), start=start, end=end, steps=steps, suggest=rules)
    _console().print(lr_find_table(report, rules))
    for t in report.tested:
        if t.skipped or any(lr != lr for lr, _ in t.result.suggestions.values()):  # NaN: no suggestion
            typer.echo(f"note: {t.label} {'skipped: ' + t.skipped if t.skipped else 'has no suggestion: ' + SHORT}",
                       err=True)
    typer.echo(f"wrote {plots.lr_find(report, out if out is not None else Path(f'lr_find-{report.name}.png'))}")
    if write_grid:
        typer.echo(report.grid(rules[0]), nl=False)


@command()
def landscape(
    results_dir: Annotated[Path, typer.Argument(help="A results directory of runs with train.save_params.")],
    run: Annotated[list[str] | None, typer.Option("--run", help="A run id (twice: the line between two runs).")] = None,
    by: Annotated[list[str] | None, typer.Option("--by", help="KEY=VALUE: the first ok run matching.")] = None,
    kind: Annotated[str, typer.Option("--kind", help="line, plane or pca.")] = "line",
    samples: Annotated[int | None, typer.Option("--samples", min=1, help="A fixed subset of the training set.")] = None,
    resolution: Annotated[int, typer.Option("--resolution", min=3, help="Points per axis.")] = 51,
    seed: Annotated[int, typer.Option("--seed", help="Seeds the directions and the subset.")] = 0,
    out: Annotated[Path | None, typer.Option("--out", help="FILE.png (default: RESULTS_DIR/landscape-KIND.png).")]
    = None,
) -> None:
    """Draw the training loss along a line, on a plane or along the PCA path of a run's
    saved parameters, and print its sharpness (top Hessian eigenvalue)."""
    from lossbench import api

    land, path = api.landscape(results_dir, run, by, kind, samples, resolution, seed, out)
    typer.echo(f"run {' vs '.join(land.runs)} ({'; '.join(land.labels)}), {land.samples} training examples")
    typer.echo(f"loss at the final parameters {land.final_loss:.6g}, lowest {float(land.loss.min()):.6g}")
    typer.echo(f"sharpness (top Hessian eigenvalue): {land.sharpness:.6g} ({land.sharpness_iters} power iterations)")
    typer.echo(f"wrote {path} ({land.seconds['surface']:.1f} s surface, {land.seconds['sharpness']:.1f} s sharpness)")


@command("list")
def list_(
    kind: Annotated[
        str | None,
        typer.Argument(help="datasets, models, losses, optimizers, schedules or train (the config sections "
                            "train, target, search and prune) (default: all)"),
    ] = None,
) -> None:
    """The catalog: every dataset, model, loss, optimizer and schedule (and, as `train`, the
    sections train, target, search and prune), with its options, their defaults and allowed
    ranges, and a one-sentence summary."""
    from lossbench import api
    from lossbench.analysis.report import catalog_table

    console = _console()
    for k in [kind] if kind is not None else api.KINDS.options:
        console.print(catalog_table(k, api.catalog(k)))


data_app = typer.Typer(no_args_is_help=True, help="Datasets: what is cached, prepare one before a sweep, where it is.")
app.add_typer(data_app, name="data")


def _idx_name(name: str) -> str:
    from lossbench.data import DATASETS, idx
    from lossbench.errors import ConfigError
    from lossbench.registry import did_you_mean

    if name not in idx.KNOWN:
        what = "is generated from its options or read from its file by the run" if name in DATASETS.names() else \
            f"is not a dataset with files ({', '.join(idx.KNOWN)}){did_you_mean(name, list(idx.KNOWN))}"
        raise ConfigError(f"NAME: {what}, got {name!r}")
    return name


@data_app.command("list")
def data_list() -> None:
    """MNIST-format datasets: where their files are found, their sizes, and the decoded cache."""
    with errors_as_exit_codes():
        from lossbench.data import idx

        for row in idx.inventory():
            where = f"{row['dir']} ({row['files_bytes'] / 2**20:.1f} MB)" if row["dir"] else "not found"
            cached = f"decoded {row['decoded_bytes'] / 2**20:.1f} MB" if row["decoded_bytes"] else "not decoded"
            typer.echo(f"{row['name']:<14} {where}; cache {row['cache']}: {cached}")


@data_app.command("fetch")
def data_fetch(
    name: Annotated[str, typer.Argument(help="mnist or fashion_mnist.")],
    cache: Annotated[
        Path | None,
        typer.Option("--cache", help="Cache root to prepare, e.g. a cluster's shared path (as LOSSBENCH_CACHE)."),
    ] = None,
) -> None:
    """Find or download a dataset, verify it and decode it into the cache, before a sweep."""
    with errors_as_exit_codes():
        import os

        from lossbench import data

        if cache is not None:
            os.environ["LOSSBENCH_CACHE"] = str(cache)
        where = data.prepare({"name": _idx_name(name)}, lambda kind, **info: _data_event(kind, info))
        typer.echo(f"{name}: ready, files in {where}")


@data_app.command("path")
def data_path(name: Annotated[str, typer.Argument(help="mnist or fashion_mnist.")]) -> None:
    """Print the directory a run would read the dataset's files from (exit 2 if none yet)."""
    with errors_as_exit_codes():
        from lossbench.data import idx
        from lossbench.errors import DataError

        files = idx.find_files(_idx_name(name))
        if files is None:
            raise DataError(f"{name}: not found locally (looked in {', '.join(map(str, idx.search_dirs(name)))}); "
                            f"`lossbench data fetch {name}` downloads it into {idx.cache_dir(name)}")
        typer.echo(next(iter(files.values())).parent)


def _one_line_summaries(typer_app: typer.Typer) -> None:
    """The command list shows each docstring's first paragraph as one wrapped sentence
    (Rich keeps the docstring's own line breaks, which broke it mid-line at 80 columns)."""
    for info in typer_app.registered_commands:
        if info.short_help is None and info.callback is not None and info.callback.__doc__:
            info.short_help = " ".join(info.callback.__doc__.split("\n\n")[0].split())


_one_line_summaries(app)
