"""Sinks: where a probe's flushed steps go. In memory, or a run directory on disk.

The probe hands each flush to a sink as plain numpy arrays; the sink turns them into a
Record on demand. The probe never imports this package: gradprobe.attach connects them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from gradprobe.record.load import load
from gradprobe.record.record import Record
from gradprobe.record.rundir import RunDir


def _concat(chunks: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    keys = list(dict.fromkeys(k for chunk in chunks for k in chunk))
    return {k: np.concatenate([chunk[k] for chunk in chunks]) for k in keys}


def fit_width(array: np.ndarray, width: int) -> np.ndarray:
    """A series block (k, n_layers, m) NaN-padded at the end of its last axis to `width`."""
    pad = width - array.shape[2]
    if pad <= 0:
        return array
    return np.concatenate([array, np.full((*array.shape[:2], pad), np.nan)], axis=2)


def _concat_series(
    lengths: list[int], chunks: list[dict[str, np.ndarray]], n_layers: int
) -> dict[str, np.ndarray]:
    """Each series over all flushes: NaN for flushes without it, padded to the widest."""
    widths: dict[str, int] = {}
    for chunk in chunks:
        for name, array in chunk.items():
            widths[name] = max(widths.get(name, 0), array.shape[2])
    return {
        name: np.concatenate(
            [
                fit_width(chunk[name], width)
                if name in chunk
                else np.full((k, n_layers, width), np.nan)
                for k, chunk in zip(lengths, chunks)
            ]
        )
        for name, width in widths.items()
    }


class MemorySink:
    """Keeps every flushed step in memory (O(steps x layers x quantities))."""

    def __init__(self, config: Any = None) -> None:
        self._layer_info: list[dict] = []
        self._steps: list[np.ndarray] = []
        self._values: list[dict[str, np.ndarray]] = []
        self._step_values: list[dict[str, np.ndarray]] = []
        self._series: list[dict[str, np.ndarray]] = []
        self._meta: dict[str, Any] = {"status": "running", "config": config}

    def write_layers(self, layer_info: list[dict]) -> None:
        self._layer_info = [dict(d) for d in layer_info]

    def append(
        self, steps: np.ndarray, values: dict, step_values: dict, series: dict | None = None
    ) -> None:
        self._steps.append(np.asarray(steps, dtype=np.int64))
        self._values.append(values)
        self._step_values.append(step_values)
        self._series.append(dict(series or {}))

    def set_meta(self, **fields: Any) -> None:
        self._meta.update(fields)

    def finish(self, status: str, error: str | None = None) -> None:
        self._meta.update(status=status, error=error)

    def last_step(self) -> int | None:
        return int(self._steps[-1][-1]) if self._steps else None

    def record(self) -> Record:
        layers = [d["name"] for d in self._layer_info]
        if not self._steps:
            return Record(
                layers,
                np.zeros(0, np.int64),
                {},
                layer_info=self._layer_info or None,
                meta=dict(self._meta),
            )
        return Record(
            layers,
            np.concatenate(self._steps),
            _concat(self._values),
            step_values=_concat(self._step_values),
            series=_concat_series([len(s) for s in self._steps], self._series, len(layers)),
            layer_info=self._layer_info,
            meta=dict(self._meta),
        )

    def __repr__(self) -> str:
        return f"MemorySink({sum(len(s) for s in self._steps)} steps)"


class RunDirSink:
    """Writes each flush to a run directory (metrics.sqlite committed, run.json updated)."""

    def __init__(
        self,
        path: str | Path,
        *,
        config: Any = None,
        overwrite: bool = False,
        resume: bool = False,
    ) -> None:
        self.run = RunDir.create(path, config=config, overwrite=overwrite, resume=resume)
        self._n_steps = self.run.store.n_steps() if resume else 0

    def write_layers(self, layer_info: list[dict]) -> None:
        self.run.store.write_layers(layer_info)

    def append(
        self, steps: np.ndarray, values: dict, step_values: dict, series: dict | None = None
    ) -> None:
        self.run.store.append(steps, values, step_values, self._fit(series or {}))
        self._n_steps += len(steps)
        self.run.mark_flush(self._n_steps)

    def _fit(self, series: dict) -> dict:
        """Series made as wide as the stored ones; a wider one widens the stored rows.

        A probe's series grows when a longer sequence comes (delta_norm_t: the longest T
        so far), and a resumed run may start narrower than the stored one.
        """
        store = self.run.store
        fitted = {}
        for name, array in series.items():
            stored = store.series_width(name)
            if stored is not None and array.shape[2] > stored:
                store.widen_series(name, array.shape[2])
            fitted[name] = array if stored is None else fit_width(array, stored)
        return fitted

    def set_meta(self, **fields: Any) -> None:
        self.run.update_meta(**fields)

    def finish(self, status: str, error: str | None = None) -> None:
        self.run.set_status(status, error=error)
        self.run.close()

    def last_step(self) -> int | None:
        return self.run.store.last_step()

    def record(self) -> Record:
        return load(self.run.path)

    def __repr__(self) -> str:
        return f"RunDirSink({str(self.run.path)!r})"
