"""The trainer's progress bar: rich when on a terminal, nothing otherwise.

rich is imported only when a bar is shown, so `import gradprobe.lab.trainer` stays light.
"""

from __future__ import annotations

import math
import sys


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if math.isfinite(value) else str(value)


class NoProgress:
    """The bar when there is none: every call does nothing."""

    def __enter__(self) -> NoProgress:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def update(self, step: int, *, loss: float | None = None, **fields: float | None) -> None:
        """Nothing to show."""

    def __repr__(self) -> str:
        return "NoProgress()"


class RichProgress:
    """A rich bar over the training steps showing the running loss and the last accuracy.

    Args:
        total: optimizer steps the run will take.
        description: the label left of the bar.
    """

    def __init__(self, total: int, description: str) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.total = total
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=24),  # fixed: the fields to its right change length
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  {task.fields[accuracy]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            transient=False,
        )
        self._task = self._progress.add_task(description, total=total, loss="-", accuracy="")

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()

    def update(self, step: int, *, loss: float | None = None, **fields: float | None) -> None:
        """Move to `step` (steps done); show `loss` and any accuracy given as a field."""
        shown = {"loss": _fmt(loss)} if loss is not None else {}
        accuracies = [f"{k} {_fmt(v)}" for k, v in fields.items() if v is not None]
        if accuracies:
            shown["accuracy"] = "  ".join(accuracies)
        self._progress.update(self._task, completed=step, **shown)

    def __repr__(self) -> str:
        return f"RichProgress(total={self.total})"


def make_progress(total: int, *, enabled: bool, description: str = "train"):
    """A RichProgress when `enabled` and stdout is a terminal, else a NoProgress."""
    if not enabled or not sys.stdout.isatty():
        return NoProgress()
    return RichProgress(total, description)
