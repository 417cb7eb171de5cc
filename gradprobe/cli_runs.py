"""Commands that read a run directory: `show`, `diagnose`, `tensorboard`, `report`.

Registered on the main app by gradprobe.cli. Each is a thin shell over the library:
gradprobe.record here, gradprobe.diagnose and gradprobe.viz imported inside the commands.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich import box
from rich.table import Table

from gradprobe.cli_common import _EXPECTED, _console, _fail, _one_line, status_lines
from gradprobe.cli_theory import _predictions, _theory_section
from gradprobe.record import Record, load
from gradprobe.record.format import SUMMARY_QUANTITIES, fmt
from gradprobe.stats.quantities import LAYER_QUANTITIES

# What `show` tabulates unless --quantities says otherwise.
SHOW_QUANTITIES = SUMMARY_QUANTITIES
_RUN_DIR_HELP = "A run directory (holds run.json)."


def _last_measured(column: np.ndarray) -> float:
    measured = np.flatnonzero(~np.isnan(column))
    return float(column[measured[-1]]) if measured.size else math.nan


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


def show(
    run_dir: Annotated[Path, typer.Argument(help=_RUN_DIR_HELP)],
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


# -- diagnose (gradprobe.diagnose, imported inside the command)
_THRESHOLD_HELP = "threshold=value (repeatable), e.g. --set vanish_ratio=1e-3"


def diagnose(
    run_dir: Annotated[Path, typer.Argument(help=_RUN_DIR_HELP)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
    settings: Annotated[list[str] | None, typer.Option("--set", help=_THRESHOLD_HELP)] = None,
) -> None:
    """Findings with layers, cause and fix; writes RUN_DIR/findings.json.

    Exit code 0 when no finding is an error, 1 when one is, 2 on bad input.
    """
    import json

    from gradprobe.diagnose.diagnosis import diagnose as diagnose_record
    from gradprobe.diagnose.report import payload, render, worst_severity, write_findings
    from gradprobe.diagnose.thresholds import Thresholds

    try:
        thresholds = Thresholds.parse(settings or [])
        rec = load(run_dir)
        findings = diagnose_record(rec, thresholds)
        data = payload(findings, thresholds)
        write_findings(run_dir, data)
    except _EXPECTED as err:
        _fail(str(err))
    if as_json:
        typer.echo(json.dumps(data, indent=2))
    else:
        render(findings, _console(), header=status_lines(rec)[0])
        _theory_section(rec, _console())
    if worst_severity(findings) == "error":
        raise typer.Exit(code=1)


# -- tensorboard (gradprobe.viz.tensorboard, imported inside the command)
def tensorboard_command(
    run_dir: Annotated[Path, typer.Argument(help=_RUN_DIR_HELP)],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Log directory; default RUN_DIR/tb.")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace event files already there.")
    ] = False,
) -> None:
    """Write a run as TensorBoard event files: a section per quantity, a chart per layer."""
    from gradprobe.viz.tensorboard import export_tensorboard

    try:
        where = export_tensorboard(run_dir, out, overwrite=overwrite)
    except (*_EXPECTED, ImportError) as err:
        _fail(str(err))
    typer.echo(f"TensorBoard events in {where}; view with: tensorboard --logdir {where}")


# -- report (gradprobe.viz.report, imported inside the command: jinja2 and matplotlib)
def report(
    run_dirs: Annotated[
        list[Path], typer.Argument(metavar="RUN_DIR", help="Run directories (hold run.json).")
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="HTML file; default RUN_DIR/report.html, ./report.html for several."
        ),
    ] = None,
    title: Annotated[str | None, typer.Option(help="Page title.")] = None,
) -> None:
    """One self-contained HTML report; several runs side by side.

    Findings with evidence and fix first, then the per-layer table, the figures and the
    run's config; no network access needed to view it.
    """
    from gradprobe.viz.report import write_report

    if out is None:
        out = run_dirs[0] / "report.html" if len(run_dirs) == 1 else Path("report.html")
    try:
        where = write_report(run_dirs, out, title=title, predictions=_predictions(run_dirs))
    except _EXPECTED as err:
        _fail(_one_line(err))
    typer.echo(f"report: {where}")
