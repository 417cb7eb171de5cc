"""`sweep`: the cartesian grid of an Experiment's settings, trained in parallel processes.

Each point of the grid is one run directory named from its values
(`out/activation=tanh,depth=5`) and one row of the summary. A run that fails is reported
in its row, never raised: one bad corner of a grid must not lose the others.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import itertools
import multiprocessing
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gradprobe.lab.config import ConfigError, Experiment, coerce
from gradprobe.record import Record


def learning_speed(record: Record, n_steps: int | None = None) -> np.ndarray:
    """Per layer, the mean delta_norm (Nielsen's learning speed ||delta^l||) over steps.

    Args:
        record: a run's Record.
        n_steps: average over the recorded steps numbered below this (e.g. the first
            epoch's); None: over every recorded step.

    Returns:
        array of shape (n_layers,); NaN for a layer with no finite measurement.
    """
    delta = (
        record["delta_norm"] if "delta_norm" in record else np.full((0, len(record.layers)), np.nan)
    )
    if n_steps is not None:
        delta = delta[record.steps < n_steps]
    delta = np.where(np.isfinite(delta), delta, np.nan)
    counts = np.sum(~np.isnan(delta), axis=0)
    sums = np.nansum(delta, axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def first_epoch_speed(record: Record) -> np.ndarray:
    """`learning_speed` over the first epoch (the run's steps_per_epoch; all if unknown)."""
    return learning_speed(record, record.meta.get("steps_per_epoch"))


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, typed per field, in the grid's key order.

    Raises:
        ConfigError: an unknown key, a value of the wrong type, or an empty list.
    """
    typed = {}
    for key, values in grid.items():
        if isinstance(values, str) or not isinstance(values, Sequence) or not values:
            raise ConfigError(f"grid {key}={values!r} is not valid: give a non-empty list")
        typed[key] = [coerce(key, v) for v in values]
    return [dict(zip(typed, combo)) for combo in itertools.product(*typed.values())]


def run_name(point: Mapping[str, Any]) -> str:
    """The directory name of a grid point, e.g. "activation=tanh,depth=5"."""

    def text(v: Any) -> str:
        return "-".join(map(str, v)) if isinstance(v, tuple) else str(v)

    return ",".join(f"{k}={text(v)}" for k, v in point.items())


def summarize(name: str, point: dict, result) -> dict[str, Any]:
    """The summary row of a finished run: its final test figures and gradient ratio."""
    speed = first_epoch_speed(result.record)
    ratio = float(speed[0] / speed[-1]) if speed.size and speed[-1] > 0 else float("nan")
    return {
        "name": name,
        **point,
        "status": result.status,
        "error": result.error,
        "steps": len(result.record),
        "test_loss": result.final("test_loss"),
        "test_accuracy": result.final("test_accuracy"),
        "delta_ratio": ratio,
    }


def _run_one(experiment: Experiment, point: dict, run_dir: Path, overwrite: bool) -> dict:
    """Train one grid point in a worker process; a failure becomes its row."""
    import torch

    from gradprobe.lab.trainer import train

    torch.set_num_threads(1)  # the workers share the machine's cores between them
    name = run_dir.name
    start = time.perf_counter()
    try:
        row = summarize(
            name, point, train(experiment, run_dir, progress=False, overwrite=overwrite)
        )
    except Exception as err:  # reported in the row: the other runs go on
        row = {"name": name, **point, "status": "failed", "error": f"{type(err).__name__}: {err}"}
    row["seconds"] = round(time.perf_counter() - start, 2)
    return row


BACKENDS = ("local", "ray")
LOCAL_JOBS = 2  # worker processes by default: the 2 cores of a small machine


def sweep(
    base: Experiment,
    grid: Mapping[str, Sequence[Any]],
    out: str | Path,
    *,
    jobs: int | None = None,
    overwrite: bool = False,
    backend: str = "local",
    address: str | None = None,
) -> list[dict[str, Any]]:
    """Train every point of `grid` applied to `base`, `jobs` at a time, here or on Ray.

    Args:
        base: the settings shared by every run.
        grid: field -> values, e.g. {"activation": ["sigmoid", "relu"], "depth": [2, 5]}.
        out: parent directory; each run writes out/<run_name(point)>.
        jobs: runs trained at once, one torch thread each; None: 2 local worker
            processes, or as many as the Ray cluster's CPUs run.
        overwrite: replace runs already in those directories.
        backend: "local" (spawned processes on this machine) or "ray" (one Ray task per
            point: gradprobe.lab.sweep_ray; needs the `ray` extra).
        address: for backend="ray", the cluster to join (ray.init(address=...));
            None starts a local Ray instance.

    Returns:
        one row per point, in grid order: name, the point's values, status, error,
        steps, test_loss, test_accuracy, delta_ratio (first / last layer learning speed
        over the first epoch), seconds.

    Raises:
        ConfigError: a bad grid key or value (checked for every point before any run),
            a bad jobs or backend.
        ImportError: backend="ray" without Ray installed.
    """
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise ConfigError(f"jobs={jobs!r} is not valid: must be an int >= 1 or None")
    if backend not in BACKENDS:
        raise ConfigError(f"backend={backend!r} is not one of: {', '.join(BACKENDS)}")
    if address is not None and backend != "ray":
        raise ConfigError(f"address={address!r} is for backend='ray' (a Ray cluster)")
    points = grid_points(grid)
    runs = [(dataclasses.replace(base, **{"name": run_name(p), **p}), p) for p in points]
    out = Path(out)
    if backend == "ray":
        from gradprobe.lab.sweep_ray import sweep_ray

        return sweep_ray(runs, out, jobs=jobs, overwrite=overwrite, address=address)
    jobs = LOCAL_JOBS if jobs is None else jobs
    context = multiprocessing.get_context("spawn")  # fork would copy torch's thread pools
    with cf.ProcessPoolExecutor(max_workers=min(jobs, len(runs)), mp_context=context) as pool:
        futures = [
            pool.submit(_run_one, exp, point, out / run_name(point), overwrite)
            for exp, point in runs
        ]
        try:
            return [_result(future, point) for future, (_, point) in zip(futures, runs)]
        except KeyboardInterrupt:  # runs not started are dropped; started ones mark themselves
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _result(future: cf.Future, point: dict) -> dict[str, Any]:
    try:
        return future.result()
    except Exception as err:  # the worker itself died (e.g. out of memory)
        name = run_name(point)
        return {"name": name, **point, "status": "failed", "error": f"{type(err).__name__}: {err}"}


def summary_table(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]):
    """A rich Table of sweep rows: the grid keys, then the summary columns."""
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, show_edge=False)
    columns = [*keys, "status", "test_accuracy", "delta_ratio", "steps", "seconds"]
    for col in columns:
        table.add_column(col.replace("_", " "), justify="left" if col in keys else "right")
    for row in rows:
        table.add_row(*(_cell(row.get(col)) for col in columns))
    return table


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if np.isfinite(value) else str(value)
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)
