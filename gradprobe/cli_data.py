"""`gradprobe data fetch NAME`: the datasets that are not embedded, fetched once.

A sub-app of its own (`data_app`), added to the main app by gradprobe.cli. The download
and its md5 checks are `gradprobe.lab.datasets.fetch`, imported inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gradprobe.cli_common import _fail

data_app = typer.Typer(
    help="Datasets that are not embedded: fetch them once.", no_args_is_help=True
)
_FETCHABLE = ("mnist",)


@data_app.command("fetch")
def data_fetch(
    name: Annotated[str, typer.Argument(help="The dataset: mnist.")],
    dest: Annotated[
        Path | None, typer.Option(help="Directory to write; default: where the loader looks.")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds per request.")] = 30.0,
    mirrors: Annotated[
        list[str] | None,
        typer.Option("--mirror", help="Base URL to try instead of the known mirrors (repeatable)."),
    ] = None,
) -> None:
    """Download a dataset's files, verifying each file's md5 (nothing else downloads)."""
    if name not in _FETCHABLE:
        _fail(f"dataset {name!r} is not one of: {', '.join(_FETCHABLE)} (the others are embedded)")
    from gradprobe.lab.datasets.fetch import MIRRORS, fetch_mnist

    try:
        where = fetch_mnist(dest, mirrors=mirrors or MIRRORS, timeout=timeout, log=typer.echo)
    except (OSError, RuntimeError) as err:  # FetchError is a ConnectionError (an OSError)
        _fail(str(err))
    typer.echo(f"mnist: the four files are in {where}")
