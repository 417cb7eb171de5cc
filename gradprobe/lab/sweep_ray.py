"""The Ray backend of `sweep`: the same grid, one Ray task per point, on a cluster or locally.

Each task trains one point with the local backend's worker function, so a point writes the
same run directory (out/<run_name(point)>) and returns the same summary row; a failure is
its row, never raised. On a cluster every node needs gradprobe (the same version) and `out`
on a filesystem the nodes share; on one machine both hold already.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gradprobe.lab.config import Experiment
from gradprobe.lab.sweep import _run_one, run_name

# One CPU per trial: the worker trains with a single torch thread (sweep._run_one).
CPUS_PER_TRIAL = 1


def import_ray():
    """The ray module, or an ImportError that says how to install it."""
    try:
        import ray
    except ImportError as err:
        raise ImportError(
            'sweep(backend="ray") needs Ray, which is not installed: pip install "gradprobe[ray]"'
        ) from err
    return ray


def sweep_ray(
    runs: list[tuple[Experiment, dict[str, Any]]],
    out: Path,
    *,
    jobs: int | None = None,
    overwrite: bool = False,
    address: str | None = None,
) -> list[dict[str, Any]]:
    """Train each (experiment, point) of `runs` as a Ray task; one row each, in order.

    Args:
        runs: the experiments of the grid's points, with the points' values.
        out: parent directory; each run writes out/<run_name(point)>.
        jobs: trials in flight at once; None: as many as the cluster's CPUs run.
        overwrite: replace runs already in those directories.
        address: the Ray cluster to join (ray.init(address=...)), e.g. "auto" or
            "ray://head:10001"; None starts a local Ray instance. Ignored when this process
            has already called ray.init: the sweep then runs on that session.

    Returns:
        one row per run, as the local backend's (sweep._run_one).
    """
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False)
    try:
        return _run_all(ray, runs, Path(out), jobs, overwrite)
    finally:
        if started:
            ray.shutdown()


def _run_all(ray, runs, out: Path, jobs: int | None, overwrite: bool) -> list[dict[str, Any]]:
    trial = ray.remote(num_cpus=CPUS_PER_TRIAL, max_retries=0)(_run_one)
    limit = len(runs) if jobs is None else jobs
    refs: list = []
    pending: list = []
    try:
        for exp, point in runs:
            if len(pending) >= limit:  # wait for one to finish before submitting more
                _, pending = ray.wait(pending, num_returns=1)
            ref = trial.remote(exp, point, out / run_name(point), overwrite)
            refs.append(ref)
            pending.append(ref)
        return [_row(ray, ref, point) for ref, (_, point) in zip(refs, runs)]
    except KeyboardInterrupt:  # trials not finished are cancelled; started ones mark themselves
        for ref in refs:
            ray.cancel(ref)
        raise


def _row(ray, ref, point: dict[str, Any]) -> dict[str, Any]:
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as err:  # the task itself died (worker lost, out of memory)
        error = f"{type(err).__name__}: {err}"
        return {"name": run_name(point), **point, "status": "failed", "error": error}
