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


class MemorySink:
    """Keeps every flushed step in memory (O(steps x layers x quantities))."""

    def __init__(self, config: Any = None) -> None:
        self._layer_info: list[dict] = []
        self._steps: list[np.ndarray] = []
        self._values: list[dict[str, np.ndarray]] = []
        self._step_values: list[dict[str, np.ndarray]] = []
        self._meta: dict[str, Any] = {"status": "running", "config": config}

    def write_layers(self, layer_info: list[dict]) -> None:
        self._layer_info = [dict(d) for d in layer_info]

    def append(self, steps: np.ndarray, values: dict, step_values: dict) -> None:
        self._steps.append(np.asarray(steps, dtype=np.int64))
        self._values.append(values)
        self._step_values.append(step_values)

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

    def append(self, steps: np.ndarray, values: dict, step_values: dict) -> None:
        self.run.store.append(steps, values, step_values)
        self._n_steps += len(steps)
        self.run.mark_flush(self._n_steps)

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
