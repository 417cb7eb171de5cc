"""Live TensorBoard events during training: a Sink that also writes every flush as events.

`gp.watch(model, opt, run_dir=..., tensorboard=True)` wraps its sink (memory or run
directory) in a TensorBoardSink: each flush goes to that sink unchanged, then to an
event file with the tags of gradprobe.viz.tensorboard, flushed to disk at once, so
TensorBoard shows the run while it trains (at the probe's flush_every / flush_secs).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from gradprobe.viz.tensorboard_events import EventWriter, clear_events, tensorboard_protos


class TensorBoardSink:
    """Forwards every call to `inner` and writes each flush to TensorBoard as it comes.

    Args:
        inner: the real sink (gradprobe.record.sink.MemorySink or RunDirSink); the Record
            and the run directory are its, unchanged.
        log_dir: where the event file goes (created if missing).
        hist_edges: |g| edges of the "grad_hist" series, array of shape (n_bins - 1,);
            default gradprobe.stats.histogram.HIST_EDGES.
    """

    def __init__(
        self, inner: Any, log_dir: str | Path, hist_edges: np.ndarray | None = None
    ) -> None:
        self.inner = inner
        self._writer = EventWriter(log_dir, hist_edges)
        self._layers: list[str] = []

    @property
    def log_dir(self) -> Path:
        """The directory holding the event file."""
        return self._writer.log_dir

    def write_layers(self, layer_info: list[dict]) -> None:
        self.inner.write_layers(layer_info)
        self._layers = [d["name"] for d in layer_info]

    def append(
        self, steps: np.ndarray, values: dict, step_values: dict, series: dict | None = None
    ) -> None:
        """Hand the flush to the inner sink first, then write it as events and flush them.

        Args:
            steps: array of shape (k,), the recorded step numbers.
            values: quantity -> array of shape (k, n_layers).
            step_values: quantity -> array of shape (k,).
            series: name -> array of shape (k, n_layers, m).
        """
        self.inner.append(steps, values, step_values, series)
        self._writer.write(self._layers, steps, values, step_values, series)
        self._writer.flush()  # on disk now: TensorBoard shows the run as it trains

    def set_meta(self, **fields: Any) -> None:
        self.inner.set_meta(**fields)

    def finish(self, status: str, error: str | None = None) -> None:
        """Finish the inner sink, then close the event file."""
        try:
            self.inner.finish(status, error)
        finally:
            self._writer.close()

    def record(self) -> Any:
        return self.inner.record()

    def last_step(self) -> int | None:
        return self.inner.last_step()

    def __repr__(self) -> str:
        return f"TensorBoardSink({self.inner!r}, log_dir={str(self.log_dir)!r})"


def tensorboard_dir(tensorboard: bool | str | Path, run_dir: str | Path | None) -> Path | None:
    """Where gp.watch's `tensorboard=` option writes: None (off), RUN_DIR/tb, or a path.

    Raises:
        ValueError: tensorboard=True without a run_dir.
        TypeError: `tensorboard` is not a bool, str or Path.
    """
    if tensorboard is False or tensorboard is None:
        return None
    if tensorboard is True:
        if run_dir is None:
            raise ValueError(
                "tensorboard=True writes to run_dir/tb and needs a run_dir; without one "
                "pass the log directory itself, e.g. tensorboard='runs/tb/exp1'"
            )
        return Path(run_dir) / "tb"
    if isinstance(tensorboard, (str, Path)):
        return Path(tensorboard)
    raise TypeError(
        f"tensorboard={tensorboard!r} is not one of: True, False, a directory (str or Path)"
    )


def live_sink(
    tensorboard: bool | str | Path,
    run_dir: str | Path | None,
    *,
    overwrite: bool = False,
    resume: bool = False,
) -> Callable[[Any], Any] | None:
    """What gp.watch wraps its sink with for `tensorboard=`: None when it is off.

    Checks the option and that tensorboard is installed before any run directory is
    made. A directory of its own (not RUN_DIR/tb, which `overwrite` clears with the
    run) that already holds event files is refused, unless `overwrite` (its event files
    are deleted when the sink is made) or `resume` (a new event file is added).

    Raises:
        ImportError: tensorboard is not installed.
        ValueError, TypeError: see tensorboard_dir.
        FileExistsError: the directory holds event files and neither overwrite nor resume.
    """
    log_dir = tensorboard_dir(tensorboard, run_dir)
    if log_dir is None:
        return None
    tensorboard_protos()
    own_dir = tensorboard is not True  # RUN_DIR/tb is the run directory's to clear
    if own_dir and not (resume or overwrite):
        clear_events(log_dir, overwrite=False)  # raises if event files are there

    def wrap(inner: Any) -> TensorBoardSink:
        if own_dir and overwrite:
            clear_events(log_dir, overwrite=True)
        return TensorBoardSink(inner, log_dir)

    return wrap
