"""The command line: a thin shell over the library.

Adding a command: write a function below, decorate it with `@app.command()`, print
through `_console()`, and turn an expected failure (bad path, bad option) into
`_fail(message)`: one line on stderr and exit code 2, no traceback. typer and rich are
imported here only, never by `import gradprobe`.
"""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path
from typing import Annotated, NoReturn

import numpy as np
import typer
from rich import box
from rich.console import Console
from rich.table import Table

from gradprobe._version import __version__
from gradprobe.record import Record, load
from gradprobe.stats.quantities import LAYER_QUANTITIES

app = typer.Typer(
    name="gradprobe",
    help="Show, diagnose and fix vanishing and exploding gradients in deep networks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# What `show` tabulates unless --quantities says otherwise: the gradient signal reaching
# each layer, the size of its updates, and the state of its units.
SHOW_QUANTITIES = (
    "delta_norm",
    "grad_norm",
    "update_ratio",
    "act_mean",
    "saturated_frac",
    "dead_frac",
)
# Errors a command reports in one line: bad paths, bad files, bad options.
_EXPECTED = (OSError, ValueError, sqlite3.Error)


def _console() -> Console:
    # Built per call, so COLUMNS and NO_COLOR are read when the command runs.
    return Console(highlight=False, soft_wrap=False)


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


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


def fmt(x: float) -> str:
    """A number in at most 3 significant digits; "-" for NaN (not measured).

    Scientific below 1e-3 and from 1e4 on, where fixed notation would hide the digits.
    """
    if math.isnan(x):
        return "-"
    if x == 0:
        return "0"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    text = f"{x:.2e}" if abs(x) < 1e-3 else f"{x:.3g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text


def _last_measured(column: np.ndarray) -> float:
    measured = np.flatnonzero(~np.isnan(column))
    return float(column[measured[-1]]) if measured.size else math.nan


def status_lines(rec: Record) -> list[str]:
    """The run in one line, and a second one when a value went non-finite."""
    meta = rec.meta
    status = rec.status or "unknown"
    if meta.get("status_inferred"):
        status += " (its process is gone)"
    line = f"{meta.get('name', '?')}: {status}, {len(rec)} steps recorded"
    if len(rec):
        line += f" (step {rec.steps[0]} to {rec.steps[-1]})"
    losses = rec.loss[np.isfinite(rec.loss)]
    if losses.size:
        line += f", loss {fmt(losses[0])} -> {fmt(losses[-1])}"
    lines = [line]
    if meta.get("error"):
        lines.append(f"error: {meta['error']}")
    bad = rec.first_nonfinite()
    if bad is not None:
        where = "in the loss" if bad["layer"] is None else f"at {bad['layer']}"
        lines.append(f"first non-finite value: step {bad['step']}, {where} ({bad['where']})")
    return lines


def layer_table(rec: Record, quantities: list[str]) -> Table:
    """One row per layer in forward order: each quantity at the last step it was measured."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False)
    table.add_column("layer")
    table.add_column("type")
    for q in quantities:
        # "delta_norm" -> "delta_" / "norm": full names that fit an 80-column terminal
        table.add_column(q.replace("_", "_\n", 1), justify="right")
    for i, info in enumerate(rec.layer_info):
        cells = [fmt(_last_measured(rec[q][:, i])) if q in rec else "-" for q in quantities]
        table.add_row(info["name"], info.get("type") or "-", *cells)
    return table


def _parse_quantities(text: str | None, rec: Record) -> list[str]:
    if text is None:
        return list(SHOW_QUANTITIES)
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [n for n in names if n not in rec and n not in LAYER_QUANTITIES]
    if unknown or not names:
        _fail(f"unknown quantities {unknown or text!r}; this run has {rec.quantities}")
    return names


@app.command()
def show(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (holds run.json).")],
    quantities: Annotated[
        str | None,
        typer.Option("--quantities", "-q", help="Comma-separated per-layer quantities."),
    ] = None,
) -> None:
    """Print a run's status and a per-layer summary at the last recorded step."""
    try:
        rec = load(run_dir)
    except _EXPECTED as err:
        _fail(str(err))
    names = _parse_quantities(quantities, rec)
    console = _console()
    for line in status_lines(rec):
        console.print(line, markup=False)
    if rec.layers:
        console.print(layer_table(rec, names))


def main() -> None:
    """Entry point of the `gradprobe` script and `python -m gradprobe`."""
    app()
