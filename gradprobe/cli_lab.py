"""The lab on the command line: `train`, `sweep` and `demo` train networks with the probe on.

Registered on the main app by gradprobe.cli. gradprobe.lab is imported inside each
command, so torch loads only when a command trains.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from gradprobe.cli_common import _EXPECTED, _console, _fail, _one_line, status_lines
from gradprobe.cli_theory import _predictions
from gradprobe.record.format import fmt

DEFAULT_SEED = 0  # what `gradprobe train/sweep` use when neither config nor --set gives one
_SET_HELP = "key=value, an Experiment field (repeatable), e.g. --set depth=5"


def _experiment_values(config: Path | None, overrides: list[str] | None) -> dict:
    from gradprobe.lab.config import parse_overrides, read_toml

    values = read_toml(config) if config is not None else {}
    values.update(parse_overrides(overrides or []))
    return values


def _seeded(values: dict, command: str, also: str = ""):
    from gradprobe.lab.config import Experiment

    if values.get("seed") is None:
        # An Experiment needs a seed; on the command line an unseeded run gets seed 0,
        # said aloud and recorded in run.json, so the run can still be repeated.
        values = {**values, "seed": DEFAULT_SEED}
        typer.echo(
            f"{command}: no seed given, using seed={DEFAULT_SEED} (recorded in run.json; "
            f"set `seed = N` in the config or pass --set seed=N{also})",
            err=True,
        )
    return Experiment.from_dict(values)


def _evaluation_table(evaluation: list[dict]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False)
    keys = [k for k in evaluation[0] if k not in ("epoch", "step")]
    for col in ["epoch", "step", *keys]:
        table.add_column(col.replace("_", " "), justify="right")
    for row in evaluation:
        epoch = row["epoch"]
        cells = [fmt(math.nan if row.get(k) is None else row[k]) for k in keys]
        table.add_row(f"{epoch:g}", str(row["step"]), *cells)
    return table


def train(
    config: Annotated[
        Path | None, typer.Argument(help="A TOML file of Experiment keys (key = value).")
    ] = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", help=_SET_HELP)] = None,
    out: Annotated[Path, typer.Option("--out", help="The run directory to write.")] = ...,
    overwrite: Annotated[bool, typer.Option(help="Replace a run already in --out.")] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bar.")] = False,
) -> None:
    """Train one lab Experiment with the probe on; the run goes to --out."""
    from gradprobe.lab.trainer import train as train_experiment

    try:
        experiment = _seeded(_experiment_values(config, overrides), "train")
        result = train_experiment(experiment, out, progress=not no_progress, overwrite=overwrite)
    except _EXPECTED as err:
        _fail(_one_line(err))
    except KeyboardInterrupt:
        typer.echo(f"interrupted: the steps so far are kept in {out}", err=True)
        raise typer.Exit(code=130) from None
    console = _console()
    for line in status_lines(result.record):
        console.print(line, markup=False)
    if result.evaluation:
        console.print(_evaluation_table(result.evaluation))
    console.print(f"run: {out}", markup=False)
    if result.status != "done":
        raise typer.Exit(code=1)


def _parse_grid(items: list[str]) -> dict[str, list[str]]:
    grid = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key.strip() or not values.strip():
            _fail(f"--grid {item!r} is not key=v1,v2 (e.g. --grid depth=2,5,10)")
        # sizes hold commas themselves: their values are separated by ';'
        grid[key.strip()] = [v for v in values.split(";" if ";" in values else ",") if v]
    return grid


def sweep(
    config: Annotated[
        Path | None, typer.Argument(help="A TOML file of the settings shared by every run.")
    ] = None,
    grid: Annotated[
        list[str],
        typer.Option("--grid", help="key=v1,v2 (repeatable; sizes: 64,30,10;64,30,30,10)."),
    ] = ...,
    overrides: Annotated[list[str] | None, typer.Option("--set", help=_SET_HELP)] = None,
    out: Annotated[Path, typer.Option("--out", help="Parent of the run directories.")] = Path(
        "runs/sweep"
    ),
    jobs: Annotated[
        int | None,
        typer.Option(help="Runs trained at once (default: 2 here; on Ray, the cluster's CPUs)."),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace runs already there.")] = False,
    backend: Annotated[
        str, typer.Option(help="local (processes here) or ray (needs the ray extra).")
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(help="--backend ray: the cluster to join (auto, ray://host:port)."),
    ] = None,
) -> None:
    """Train every combination of the --grid values in parallel; one run directory each."""
    from gradprobe.lab.sweep import summary_table
    from gradprobe.lab.sweep import sweep as run_sweep

    points = _parse_grid(grid)
    try:
        values = _experiment_values(config, overrides)
        if "seed" in points:  # a seed swept is a seed given
            values.setdefault("seed", points["seed"][0])
        base = _seeded(values, "sweep", also=" or --grid seed=0,1,2")
        rows = run_sweep(
            base, points, out, jobs=jobs, overwrite=overwrite, backend=backend, address=address
        )
    except (*_EXPECTED, ImportError) as err:  # ImportError: --backend ray without Ray
        _fail(_one_line(err))
    console = _console()
    console.print(summary_table(rows, list(points)))
    for row in rows:
        if row["status"] != "done":
            console.print(f"{row['name']}: {row.get('error')}", markup=False)
    console.print(f"runs: {out}", markup=False)
    if any(row["status"] != "done" for row in rows):
        raise typer.Exit(code=1)


def demo(
    out: Annotated[Path, typer.Option("--out", help="Parent of the two run directories.")] = Path(
        "runs"
    ),
    depth: Annotated[int, typer.Option(help="Hidden layers of both nets.")] = 5,
    width: Annotated[int, typer.Option(help="Units per hidden layer.")] = 32,
    epochs: Annotated[int, typer.Option(help="Epochs of training.")] = 5,
    limit_train: Annotated[
        int | None, typer.Option(help="Train on the first N images only (a quicker look).")
    ] = None,
) -> None:
    """Deep sigmoid vs ReLU on built-in digits: learning speed per layer, and a report.

    Trains 5 sigmoid hidden layers (Nielsen init) and the same with ReLU (He init), prints
    delta_norm per layer side by side, and writes OUT/demo-sigmoid, OUT/demo-relu and the
    HTML report OUT/demo-report.html comparing them.
    """
    from gradprobe.lab.demo import run_demo
    from gradprobe.viz.report import write_report

    try:
        result = run_demo(
            out,
            depth=depth,
            width=width,
            epochs=epochs,
            limit_train=limit_train,
            console=_console(),
        )
        run_dirs = [r.run_dir for r in result.results.values()]
        path = write_report(
            run_dirs,
            Path(out) / "demo-report.html",
            title="gradprobe demo: deep sigmoid (Nielsen init) vs ReLU (He init)",
            predictions=_predictions(run_dirs),
        )
    except _EXPECTED as err:
        _fail(_one_line(err))
    typer.echo(f"report: {path} (open it in a browser)")
