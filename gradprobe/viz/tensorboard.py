"""TensorBoard export of a Record, or of a run directory, as event files in a log directory.

The tags, the custom-scalars layout and the histograms written are those of
gradprobe.viz.tensorboard_events (EventWriter); this module adds the export itself: which
Record, which directory, and refusing a directory that already holds event files. The
event-writing names are re-exported here, so `from gradprobe.viz.tensorboard import
EventWriter` keeps working. tensorboard itself is imported only when a writer is made.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gradprobe.record.load import load
from gradprobe.record.record import Record
from gradprobe.viz.tensorboard_events import (
    EVENT_GLOB,
    HIST_SERIES,
    INSTALL_HINT,
    LAYOUT_TAG,
    STEP_SECTION,
    EventWriter,
    clear_events,
    default_hist_edges,
    hist_buckets,
    scalar_table,
    tensorboard_protos,
)

__all__ = [
    "EVENT_GLOB",
    "HIST_SERIES",
    "INSTALL_HINT",
    "LAYOUT_TAG",
    "STEP_SECTION",
    "EventWriter",
    "clear_events",
    "default_hist_edges",
    "export_tensorboard",
    "hist_buckets",
    "scalar_table",
    "tensorboard_protos",
]


def export_tensorboard(
    source: Record | str | Path,
    out: str | Path | None = None,
    *,
    overwrite: bool = False,
    hist_edges: np.ndarray | None = None,
) -> Path:
    """Write a Record (or a run directory's) as TensorBoard event files.

    Args:
        source: a Record, or a run directory (holds run.json).
        out: the log directory; default RUN_DIR/tb (required for a Record).
        overwrite: delete event files already in `out` first (only those).
        hist_edges: |g| edges of "grad_hist", array of shape (n_bins - 1,); default
            gradprobe.stats.histogram.HIST_EDGES.

    Returns:
        the log directory: view it with `tensorboard --logdir <it>`.

    Raises:
        ImportError: tensorboard is not installed. FileExistsError: `out` holds event
            files and overwrite is False. ValueError: a Record without `out`.
    """
    tensorboard_protos()  # fail before touching the disk
    if isinstance(source, Record):
        if out is None:
            raise ValueError("export_tensorboard(Record) needs out=: the log directory to write")
        rec = source
    else:
        rec = load(source)
        out = Path(source) / "tb" if out is None else out
    out = Path(out)
    clear_events(out, overwrite)
    writer = EventWriter(out, hist_edges)
    try:
        values = {q: rec[q] for q in rec.quantities}
        writer.write(rec.layers, rec.steps, values, rec.step_values, rec.series)
    finally:
        writer.close()
    return out
