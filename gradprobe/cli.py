"""The command line: a thin shell over the library, one concept per module.

This module holds the app, its --version and the order the commands are listed in; the
commands live beside it:

- gradprobe/cli_common.py: the console, `_fail`, `_one_line`, `_EXPECTED`, `status_lines`
- gradprobe/cli_runs.py: show, diagnose, tensorboard, report (read a run directory)
- gradprobe/cli_theory.py: predict, and the theory sections of diagnose and report
- gradprobe/cli_lab.py: train, sweep, demo (train with the probe on)
- gradprobe/cli_fix.py: fix (remedy trials for a lab run)
- gradprobe/cli_reproduce.py: reproduce (the classic experiments)
- gradprobe/cli_data.py: the `data` sub-app (fetch the datasets that are not embedded)

Adding a command: write an undecorated function in the module of its concept, print
through `_console()`, turn an expected failure (bad path, bad option) into
`_fail(message)`: one line on stderr and exit code 2, no traceback; then register it in
`_register_commands` below. typer and rich are imported by these modules only, never by
`import gradprobe`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from gradprobe._version import __version__
from gradprobe.cli_common import _EXPECTED, _console, _fail, _one_line, status_lines
from gradprobe.cli_data import _FETCHABLE, data_app, data_fetch
from gradprobe.cli_fix import FIX_REPORT_TOP, _fix_report, fix
from gradprobe.cli_lab import (
    DEFAULT_SEED,
    _evaluation_table,
    _experiment_values,
    _parse_grid,
    _seeded,
    demo,
    sweep,
    train,
)
from gradprobe.cli_reproduce import reproduce_command
from gradprobe.cli_runs import (
    SHOW_QUANTITIES,
    _last_measured,
    _parse_quantities,
    diagnose,
    layer_table,
    report,
    show,
    tensorboard_command,
)
from gradprobe.cli_theory import _predictions, _theory_section, predict_command
from gradprobe.record import Record, load
from gradprobe.record.format import SUMMARY_QUANTITIES, fmt
from gradprobe.stats.quantities import LAYER_QUANTITIES

# Names importable from gradprobe.cli before the commands moved to their own modules.
__all__ = [
    "DEFAULT_SEED",
    "FIX_REPORT_TOP",
    "LAYER_QUANTITIES",
    "SHOW_QUANTITIES",
    "SUMMARY_QUANTITIES",
    "Record",
    "_EXPECTED",
    "_FETCHABLE",
    "_console",
    "_evaluation_table",
    "_experiment_values",
    "_fail",
    "_fix_report",
    "_last_measured",
    "_one_line",
    "_parse_grid",
    "_parse_quantities",
    "_predictions",
    "_seeded",
    "_theory_section",
    "app",
    "data_app",
    "data_fetch",
    "demo",
    "diagnose",
    "fix",
    "fmt",
    "layer_table",
    "load",
    "main",
    "predict_command",
    "report",
    "reproduce_command",
    "show",
    "status_lines",
    "sweep",
    "tensorboard_command",
    "train",
]

app = typer.Typer(
    name="gradprobe",
    help="Show, diagnose and fix vanishing and exploding gradients in deep networks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"gradprobe {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Show, diagnose and fix vanishing and exploding gradients in deep networks."""


def _register_commands() -> None:
    # The order here is the order `gradprobe --help` lists them in.
    app.command()(show)
    app.command()(diagnose)
    app.command("predict")(predict_command)
    app.command("tensorboard")(tensorboard_command)
    app.command()(report)
    app.command()(train)
    app.command()(sweep)
    app.command()(demo)
    app.command()(fix)
    app.add_typer(data_app, name="data")
    app.command("reproduce")(reproduce_command)


_register_commands()


def main() -> None:
    """Entry point of the `gradprobe` script and `python -m gradprobe`."""
    app()
