"""Flushing: the device ring of step states, turned into quantities, handed to a sink."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from gradprobe.probe.buffer import StepBuffer
from gradprobe.probe.series_buffer import SeriesBuffer
from gradprobe.stats import derive, derive_steps
from gradprobe.stats.derivation import STEP_SLOT
from gradprobe.stats.nonfinite import describe_first_nonfinite, first_nonfinite


class Sink(Protocol):
    """Where flushed steps go: memory, or a run directory (see gradprobe.record.sink)."""

    def write_layers(self, layer_info: list[dict]) -> None: ...
    def append(
        self, steps: np.ndarray, values: dict, step_values: dict, series: dict | None = None
    ) -> None: ...
    def set_meta(self, **fields: Any) -> None: ...
    def finish(self, status: str, error: str | None = None) -> None: ...
    def record(self) -> Any: ...
    def last_step(self) -> int | None: ...


class Flusher:
    """Drains a StepBuffer into a Sink: one host copy, derived quantities, a NaN check.

    Args:
        buffer: the device ring of step states.
        sink: where the quantities go.
        flush_secs: flush at least this often (checked at the first forward of a step).
        layers: called once, at the first flush: (layer order as state row indices,
            layer_info dicts in that order). The first forward has run by then.
        series: rings of per-step vectors aligned with `buffer` (e.g. delta_norm_t),
            drained with it.
        reduce: called before each drain; under torch.distributed it all-reduces the
            rings in place (gradprobe.probe.distributed.DistReducer.reduce). False: the
            rows cannot be reduced (a rank was lost) and are dropped, not written.
    """

    def __init__(
        self,
        buffer: StepBuffer,
        sink: Sink,
        flush_secs: float,
        layers: Callable[[], tuple[list[int], list[dict]]],
        series: tuple[SeriesBuffer, ...] = (),
        reduce: Callable[[], bool] | None = None,
    ) -> None:
        self.buffer = buffer
        self._reduce = reduce
        self.series = series
        self.sink = sink
        self._flush_secs = flush_secs
        self._layers = layers
        self._last = time.monotonic()
        self._order: list[int] | None = None  # the Record's layer order, fixed at 1st flush
        self._names: list[str] = []
        self.first_nonfinite: dict | None = None

    def due(self) -> bool:
        """Steps are waiting and the ring is full or flush_secs have passed."""
        if not self.buffer.steps:
            return False
        return self.buffer.full or time.monotonic() - self._last >= self._flush_secs

    def flush(self) -> None:
        """Copy the recorded steps to the host and hand them to the sink."""
        self._last = time.monotonic()
        if not self.buffer.steps:
            return
        if self._order is None:
            self._order, info = self._layers()
            self._names = [d["name"] for d in info]
            self.sink.write_layers(info)
        if self._reduce is not None and not self._reduce():
            k = len(self.buffer.steps)
            self.buffer.drain()
            for ring in self.series:
                ring.drain(k, self._order)
            return
        steps, states, step_states = self.buffer.drain()
        values = {q: v[:, self._order] for q, v in derive(states).items()}
        step_values = derive_steps(step_states)
        series = {}
        for ring in self.series:
            block = ring.drain(len(steps), self._order)  # (k, n_layers, width) or None
            if block is not None:
                series[ring.name] = block
        self.sink.append(steps, values, step_values, series)
        logged = step_states[:, STEP_SLOT["loss_count"]] > 0
        loss_bad = logged & ~np.isfinite(step_states[:, STEP_SLOT["loss_sum"]])
        self._note_nonfinite(steps, values, step_values["loss"], loss_bad)

    def _note_nonfinite(self, steps, values, loss, loss_bad) -> None:
        if self.first_nonfinite is not None:
            return
        found = first_nonfinite(steps, self._names, values, loss, loss_bad)
        if found is None:
            return
        self.first_nonfinite = found
        warnings.warn(f"gradprobe: {describe_first_nonfinite(found)}", RuntimeWarning, stacklevel=4)
