"""What every command of the command line shares: the console, one-line failures, and a
run's status in a line or two.

A command prints through `_console()` and turns an expected failure (bad path, bad file,
bad option: `_EXPECTED`) into `_fail(message)`: one line on stderr and exit code 2, no
traceback. typer and rich are imported by the command line only, never by `import gradprobe`.
"""

from __future__ import annotations

import sqlite3
from typing import NoReturn

import numpy as np
import typer
from rich.console import Console

from gradprobe.record import Record
from gradprobe.record.format import fmt

# Errors a command reports in one line: bad paths, bad files, bad options.
_EXPECTED = (OSError, ValueError, sqlite3.Error)


def _console() -> Console:
    # Built per call, so COLUMNS and NO_COLOR are read when the command runs.
    return Console(highlight=False, soft_wrap=False)


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def _one_line(err: BaseException) -> str:
    # a loader's message may list what it looked at line by line; _fail prints one line
    return " ".join(line.strip() for line in str(err).splitlines() if line.strip())


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
