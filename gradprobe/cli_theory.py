"""The mean-field theory on the command line: `gradprobe predict`, the predicted vs
measured section of `gradprobe diagnose`, and the predictions the HTML report shows.

Registered on the main app by gradprobe.cli. gradprobe.theory and gradprobe.lab (torch)
are imported inside the functions, and only for the lab mlp / residual_mlp runs the
theory covers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from gradprobe.cli_common import _EXPECTED, _console, _fail, _one_line
from gradprobe.record import Record, load
from gradprobe.record.format import fmt

# Lab models the mean-field theory covers; a run of any other model imports no torch.
_THEORY_MODELS = ("mlp", "residual_mlp")


def _covered(rec: Record) -> bool:
    config = rec.meta.get("config")
    return isinstance(config, dict) and config.get("model") in _THEORY_MODELS


def _theory_section(rec: Record, console: Console) -> None:
    """Predicted vs measured per-layer log-gain at the first step, for lab runs it covers."""
    if not _covered(rec):
        return  # only lab mlp / residual_mlp runs: no torch import for the others
    from gradprobe.lab.theory_spec import predict_run
    from gradprobe.theory import compare

    try:
        pred = predict_run(rec)
        comparison = None if pred is None else compare(pred, rec)
    except ValueError:
        return
    if comparison is None:
        return
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, title="log-gain per layer at init")
    for col in ("layer", "predicted", "measured", "diff", "tol", ""):
        table.add_column(col, justify="left" if col == "layer" else "right")
    for row in comparison.rows():
        cells = [fmt(row[k]) for k in ("predicted", "measured", "diff", "tol")]
        table.add_row(row["layer"], *cells, "parts" if row["parted"] else "")
    console.print(table)
    console.print(comparison.summary(), markup=False)


def _predictions(run_dirs: list[Path]) -> list:
    """Per run, the theory's Prediction for the report (None where the theory does not
    cover the run); a failure prints a one-line note and never costs the report."""
    out = []
    for run_dir in run_dirs:
        try:
            rec = load(run_dir)
        except (*_EXPECTED, KeyError):
            out.append(None)  # write_report says what is wrong with the directory
            continue
        if not _covered(rec):
            out.append(None)  # not a lab mlp: no torch import for nothing (as _theory_section)
            continue
        try:
            from gradprobe.lab.theory_spec import predict_run

            out.append(predict_run(rec))
        except Exception as err:  # the report matters more than its prediction section
            why = f"{type(err).__name__}: {_one_line(err)}"
            typer.echo(f"note: no prediction for {run_dir}: {why}", err=True)
            out.append(None)
    return out


def predict_command(
    activation: Annotated[str, typer.Option(help="Hidden activation, e.g. tanh.")] = "tanh",
    init: Annotated[
        str, typer.Option(help="Initialiser, e.g. glorot_normal, or glorot / he / lecun.")
    ] = "glorot_normal",
    depth: Annotated[int, typer.Option(help="Hidden layers (residual: blocks).")] = 50,
    width: Annotated[int, typer.Option(help="Units per hidden layer.")] = 256,
    bias_var: Annotated[
        float | None, typer.Option(help="sigma_b^2 of every layer; default: the init's rule.")
    ] = None,
    input_var: Annotated[float, typer.Option(help="Mean square of the inputs.")] = 1.0,
    n_in: Annotated[int | None, typer.Option(help="Input features (default width).")] = None,
    n_out: Annotated[int | None, typer.Option(help="Outputs (default width).")] = None,
    model: Annotated[str, typer.Option(help="mlp or residual_mlp.")] = "mlp",
    alpha: Annotated[float, typer.Option(help="Residual branch scale.")] = 1.0,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write JSON here.")] = None,
) -> None:
    """Mean-field prediction before training: per-layer q, chi, log-gain, and a verdict."""
    from gradprobe.lab.init import INIT_ALIASES
    from gradprobe.lab.theory_spec import predict_config

    init = INIT_ALIASES.get(init, init)

    try:
        pred = predict_config(
            activation, init, depth=depth, width=width, n_in=n_in, n_out=n_out, model=model,
            alpha=alpha, bias_var=bias_var, input_var=input_var,
        )  # fmt: skip
        if json_path is not None:
            pred.to_json(json_path)
    except _EXPECTED as err:
        _fail(_one_line(err))
    table = Table(box=box.SIMPLE_HEAD, show_edge=False)
    columns = ("q", "chi", "log_gain", "cum_log_gain", "cum_sd")
    table.add_column("layer")
    for col in columns:
        table.add_column(col.replace("_", " "), justify="right")
    for row in pred.table_rows():
        table.add_row(row["layer"], *(fmt(row[k]) for k in columns))
    console = _console()
    console.print(table)
    console.print(pred.verdict(), markup=False)
