"""`gradprobe reproduce NAME`: run a classic experiment and set ours beside the published.

Registered on the main app by gradprobe.cli; kept here so the command line stays one
concept per file. The work is `gradprobe.lab.reproduce.reproduce`; the page is
`gradprobe.viz.report_reproduce.write_reproduction_report`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from gradprobe.cli_common import _fail
from gradprobe.lab.reproduce.registry import DEFAULT_OUT, NAMES

_HELP_NAME = "The experiment: " + ", ".join(NAMES) + " (nielsen = nielsen-speed + nielsen-depth)."


def _write_json(reps, name: str, path: Path) -> None:
    document = {"name": name, "reproductions": [r.to_dict() for r in reps]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def _write_report(reps, name: str, out: Path) -> str:
    from gradprobe.viz.report_reproduce import write_reproduction_report

    try:
        path = write_reproduction_report(reps, out / f"{name}-report.html")
    except (OSError, ValueError) as err:  # the tables and runs stand without the page
        return f"report skipped: {err}"
    return f"report: {path} (open it in a browser)"


def reproduce_command(
    name: Annotated[str, typer.Argument(help=_HELP_NAME, show_default=False)],
    seeds: Annotated[
        int | None,
        typer.Option(help="Number of seeds (0..N-1); default: the experiment's own."),
    ] = None,
    full: Annotated[
        bool, typer.Option("--full", help="Run the original in full (every epoch and image).")
    ] = False,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the table as JSON to this file.")
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Parent directory of the experiment's runs.")
    ] = DEFAULT_OUT,
    report: Annotated[bool, typer.Option(help="Write OUT/NAME-report.html.")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")] = False,
) -> None:
    """Reproduce a classic vanishing-gradient experiment: published figures beside ours.

    Prints the side-by-side table (published, our mean, sd over seeds, n, agrees), the
    published claims with our evidence and notes on where and why ours differs; writes
    the runs and reproduction.json to OUT/NAME and an HTML report with the original's
    pictures to OUT/NAME-report.html.
    """
    from gradprobe.lab.reproduce import reproduce

    if name not in NAMES:
        _fail(f"experiment {name!r} is not one of: {', '.join(NAMES)}")
    try:
        reps = reproduce(name, seeds=seeds, full=full, out=out, log=None if quiet else typer.echo)
    except (ValueError, TypeError, OSError) as err:
        _fail(str(err))  # whole: a missing dataset's message lists where to put the files
    except KeyboardInterrupt:
        typer.echo(f"interrupted: the runs recorded so far are in {out / name}", err=True)
        raise typer.Exit(code=130) from None
    for rep in reps:
        typer.echo("")
        typer.echo(rep.table())
        typer.echo(f"({rep.elapsed_s:.1f} s; runs and reproduction.json in {rep.out})")
    if json_out is not None:
        _write_json(reps, name, json_out)
        typer.echo(f"json: {json_out}")
    if report:
        typer.echo(_write_report(reps, name, Path(out)))
