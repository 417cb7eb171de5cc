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
from gradprobe.record.format import SUMMARY_QUANTITIES, fmt
from gradprobe.stats.quantities import LAYER_QUANTITIES

app = typer.Typer(
    name="gradprobe",
    help="Show, diagnose and fix vanishing and exploding gradients in deep networks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# What `show` tabulates unless --quantities says otherwise.
SHOW_QUANTITIES = SUMMARY_QUANTITIES
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


# -- diagnose (gradprobe.diagnose, imported inside the command)
_THRESHOLD_HELP = "threshold=value (repeatable), e.g. --set vanish_ratio=1e-3"


@app.command()
def diagnose(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (holds run.json).")],
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


# -- theory: predict, and predicted vs measured in diagnose (gradprobe.theory, imported inside)
def _theory_section(rec: Record, console: Console) -> None:
    """Predicted vs measured per-layer log-gain at the first step, for lab runs it covers."""
    config = rec.meta.get("config")
    if not isinstance(config, dict) or config.get("model") not in ("mlp", "residual_mlp"):
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


@app.command("predict")
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


# -- tensorboard (gradprobe.viz.tensorboard, imported inside the command)
@app.command("tensorboard")
def tensorboard_command(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (holds run.json).")],
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
        config = rec.meta.get("config")
        if not isinstance(config, dict) or config.get("model") not in ("mlp", "residual_mlp"):
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


@app.command()
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


# -- the lab: train, sweep, demo (gradprobe.lab, imported inside each command: torch loads
# only when a command trains)
DEFAULT_SEED = 0  # what `gradprobe train/sweep` use when neither config nor --set gives one
_SET_HELP = "key=value, an Experiment field (repeatable), e.g. --set depth=5"


def _one_line(err: BaseException) -> str:
    # a loader's message may list what it looked at line by line; _fail prints one line
    return " ".join(line.strip() for line in str(err).splitlines() if line.strip())


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


@app.command()
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


@app.command()
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


@app.command()
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


# -- fix (gradprobe.lab.fixes, imported inside the command)
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


@app.command()
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


# -- data: datasets that are not embedded
data_app = typer.Typer(
    help="Datasets that are not embedded: fetch them once.", no_args_is_help=True
)
app.add_typer(data_app, name="data")
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


# -- reproduce (its own module: gradprobe/cli_reproduce.py)
def _register_reproduce() -> None:
    from gradprobe.cli_reproduce import reproduce_command

    app.command("reproduce")(reproduce_command)


_register_reproduce()


def main() -> None:
    """Entry point of the `gradprobe` script and `python -m gradprobe`."""
    app()
