"""The lifetime of a `Probe`'s run: flushing to the sink, closing, and the run's status.

A run ends done, failed or interrupted (DESIGN.md, run.json): close() reads which from
the exception propagating, if any; a probe never closed is closed at interpreter exit.
"""

from __future__ import annotations

import atexit
import sys
from typing import Any

from gradprobe.probe.layers import describe
from gradprobe.probe.through_time import NAME as THROUGH_TIME


def status_of(exc: BaseException | None) -> tuple[str, str | None]:
    """(status, error) of a run ending with `exc` propagating (None: a normal end)."""
    if exc is None or (isinstance(exc, SystemExit) and exc.code in (0, None)):
        return "done", None
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", "KeyboardInterrupt"
    return "failed", f"{type(exc).__name__}: {exc}"


class ProbeLifecycle:
    """Part of `Probe`: flushing, the layer order the sink sees, close() and metadata.

    Works on the state Probe.__init__ sets up (flusher and its sink, layers, capture).
    """

    # -- flushing --------------------------------------------------------------------
    def layer_info(self) -> list[dict]:
        """One dict per layer, in forward order (layers never run come last)."""
        names = self._capture.activation_names
        hooked = self._delta_mode == "hook"
        info = []
        for i in self._column_order():
            entry = describe(self._layers[i], names.get(i), hooked)
            through_time = self._through_time.describe(self._layers[i])
            if through_time is not None:
                entry[THROUGH_TIME] = through_time
            info.append(entry)
        return info

    def _column_order(self) -> list[int]:
        return self._order + [i for i in range(len(self._layers)) if i not in self._seen]

    def flush(self) -> None:
        """Copy the recorded steps to the host and hand them to the sink (run dir / memory)."""
        self._flusher.flush()

    def _layer_order(self) -> tuple[list[int], list[dict]]:
        return self._column_order(), self.layer_info()

    @property
    def first_nonfinite(self) -> dict | None:
        """{"step", "layer", "where"} of the first NaN/Inf flushed so far, or None."""
        return self._flusher.first_nonfinite

    # -- lifetime --------------------------------------------------------------------
    def _require_open(self) -> None:
        if self._closed:
            raise RuntimeError("this probe is closed; start a new one with gradprobe.watch()")

    def close(self, status: str | None = None, error: str | None = None) -> None:
        """Remove every hook, flush, and mark the run done (or failed / interrupted).

        Called from a `finally` block while an exception propagates, the status follows
        that exception: interrupted for KeyboardInterrupt, failed otherwise.
        """
        if self._closed:
            return
        self._detach()
        self._closed = True
        atexit.unregister(self._at_exit)
        if status is None:
            status, error = status_of(sys.exc_info()[1])
        if self._dist is not None and self._dist.error is not None:
            status, error = "failed", f"DistributedError: {self._dist.error}"
        try:
            self.flush()
        except BaseException as exc:  # a flush that fails (a rank lost) fails the run
            status, error = status_of(exc)
            raise
        finally:
            self._flusher.sink.finish(status, error)

    def annotate(self, **fields: Any) -> None:
        """Add JSON-serialisable fields to the run's metadata (run.json; Record.meta).

        For what the probe cannot see itself, e.g. a trainer's per-epoch evaluation.
        """
        self._require_open()
        self._flusher.sink.set_meta(**fields)

    def _at_exit(self) -> None:
        self.close("interrupted", "the process exited before probe.close()")

    def record(self):
        """A Record of every step so far (flushes first)."""
        if not self._closed:
            self.flush()
        return self._flusher.sink.record()
