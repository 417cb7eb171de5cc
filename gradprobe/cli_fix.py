"""`gradprobe fix RUN_DIR`: diagnose a lab run, try the remedies in short trials, rank them.

Registered on the main app by gradprobe.cli. The trials are `gradprobe.lab.fixes`, the
comparison page `gradprobe.viz.report`; both are imported inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gradprobe.cli_common import _EXPECTED, _fail, _one_line

FIX_REPORT_TOP = 3  # trials shown beside the baseline in the comparison report


def _fix_report(result, out: Path) -> str:
    """Write out/report.html comparing the baseline with the top trials (first seed), or
    say why not."""
    from gradprobe.viz.report import write_report

    picks = [result.baseline, *result.ranked[:FIX_REPORT_TOP]]
    runs = [c.runs[0].run_dir for c in picks if c.runs and c.runs[0].run_dir]
    try:
        where = write_report(runs, out / "report.html", title="gradprobe fix: baseline vs remedies")
    except _EXPECTED as err:
        return f"comparison report skipped: {_one_line(err)}"
    return f"comparison report: {where}"


def fix(
    run_dir: Annotated[Path, typer.Argument(help="A lab run directory (from gradprobe train).")],
    steps: Annotated[int | None, typer.Option(help="Steps per trial; default 100.")] = None,
    seeds: Annotated[int, typer.Option(help="Seeds per remedy: the run's seed and on.")] = 2,
    budget_s: Annotated[
        float | None, typer.Option("--budget-s", help="Also stop each trial after S seconds.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Parent of the trial run directories.")
    ] = None,
    jobs: Annotated[int, typer.Option(help="Trials run at once, one process each.")] = 1,
    overwrite: Annotated[bool, typer.Option(help="Replace trials already in --out.")] = False,
    remedy: Annotated[
        list[str] | None, typer.Option("--remedy", help="Try only this remedy (repeatable).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Diagnose a lab run, try the remedies for its findings in short trials, rank them."""
    import json

    from gradprobe.lab.fixes.lab_run import experiment_of, fix_run

    try:
        if seeds < 1:
            raise ValueError(f"--seeds={seeds} is not valid: must be an int >= 1")
        first = experiment_of(run_dir).seed
        result = fix_run(
            run_dir, steps=steps, seeds=tuple(range(first, first + seeds)), budget_s=budget_s,
            out=out, jobs=jobs, overwrite=overwrite, remedies=remedy or None,
        )  # fmt: skip
    except _EXPECTED as err:
        _fail(_one_line(err))
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=1))
        return
    typer.echo(result.table())
    if out is not None:
        typer.echo(f"trials: {out}")
        typer.echo(_fix_report(result, out))
