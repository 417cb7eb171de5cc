"""Training and validation loss and accuracy per epoch, from the run's metadata.

gradprobe.lab.train stores one row per evaluation in rec.meta["evaluation"]: epoch, step,
{train,val,test}_loss and, for classification, {train,val,test}_accuracy, with None
where the value was not finite (JSON has no NaN). A record without evaluations (a probe
in a user's own loop) falls back to the loss logged per step.
"""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from gradprobe.viz.figures.common import (
    FIGSIZE,
    clip_linear,
    clip_log,
    draw_marks,
    finished,
    spans_decades,
)
from gradprobe.viz.figures.weights import loss_line

SPLITS = ("train", "val", "test")
METRICS = ("loss", "accuracy")
SPLIT_COLOURS = {"train": "C0", "val": "C1", "test": "C2"}
HINT = (
    "record has neither per-epoch evaluations (rec.meta['evaluation'], written by "
    "gradprobe.lab.train) nor a logged loss (probe.log_loss)"
)


def evaluation_column(rows: list[dict], key: str) -> np.ndarray:
    """Array of shape (n_rows,): row[key]; +inf where it is None (not finite), NaN if absent."""
    return np.array(
        [np.nan if key not in row else np.inf if row[key] is None else row[key] for row in rows],
        dtype=np.float64,
    )


def evaluations(rec) -> list[dict]:
    """rec.meta["evaluation"] as a list of dicts (empty when absent)."""
    rows = rec.meta.get("evaluation") or []
    return [row for row in rows if isinstance(row, dict) and "epoch" in row]


def metrics_of(rows: list[dict]) -> list[str]:
    """Of "loss" and "accuracy", those some row holds for some split."""
    keys = {k for row in rows for k in row}
    return [m for m in METRICS if any(f"{s}_{m}" in keys for s in SPLITS)]


def check_training_curves(rec) -> list[dict]:
    """The evaluation rows with a metric (maybe none); ValueError when, besides, no loss
    was logged either."""
    rows = evaluations(rec)
    if not metrics_of(rows):
        rows = []
    if not rows and np.isnan(rec.loss).all():
        raise ValueError(HINT)
    return rows


def _metric(ax: Axes, rows: list[dict], metric: str) -> None:
    """One line per split holding `metric` (gid "{split}_{metric}"); None marked."""
    epochs = evaluation_column(rows, "epoch")
    keys = [f"{s}_{metric}" for s in SPLITS if any(f"{s}_{metric}" in r for r in rows)]
    block = np.stack([evaluation_column(rows, k) for k in keys])  # (n_splits, n_rows)
    log = metric == "loss" and spans_decades(block) and bool((block[np.isfinite(block)] > 0).all())
    plotted, marks = clip_log(block) if log else clip_linear(block)
    for key, line in zip(keys, plotted):
        split = key.split("_")[0]
        ax.plot(epochs, line, marker=".", color=SPLIT_COLOURS[split], gid=key, label=split)
    if log:
        ax.set_yscale("log")
    draw_marks(ax, epochs[None, :], plotted, {"nonfinite": marks["inf"]})
    ax.legend(fontsize="small", loc="upper right" if metric == "loss" else "lower right")
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric if metric == "loss" else "accuracy (fraction correct)")
    ax.set_title(f"{metric.capitalize()} per epoch")


def training_curves(rec) -> Figure:
    """Training / validation / test loss (and accuracy, for classification) per epoch.

    Args:
        rec: a Record whose meta holds "evaluation" rows (gradprobe.lab.train writes
            them) or, failing that, a logged loss per step.

    Returns:
        the Figure: a loss axes and, when any accuracy was recorded, an accuracy axes
        beside it; lines (gid e.g. "val_loss") of the values per epoch, with None (not
        finite) drawn at the largest finite value and marked (gid "nonfinite"). Without
        evaluations: one axes with rec.loss per step (gid "loss").
    """
    rows = check_training_curves(rec)
    fig = Figure(figsize=FIGSIZE, layout="constrained")
    if not rows:
        ax = fig.add_subplot()
        loss_line(ax, rec)
        ax.set_title("Training loss per step (no per-epoch evaluation in this record)")
        return finished([ax])
    metrics = metrics_of(rows)
    for ax, metric in zip(fig.subplots(1, len(metrics), squeeze=False)[0], metrics):
        _metric(ax, rows, metric)
    return finished(fig.axes)
