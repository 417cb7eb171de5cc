"""Activation health: saturated and dead fractions of units per layer over steps."""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from gradprobe.viz.figures.common import FIGSIZE, finished, quantity_label
from gradprobe.viz.figures.lines import layer_lines

PANELS = (
    ("saturated_frac", "sigmoid/tanh layers"),
    ("dead_frac", "ReLU-family layers"),
)
HINT = (
    "record has no saturated_frac or dead_frac measurements: they need activations=True in "
    "gp.watch, sigmoid/tanh or ReLU-family layers, and are measured on detail steps"
)
# A fraction lies in [0, 1]; a margin keeps lines on the bounds visible.
FRACTION_LIMITS = (-0.03, 1.03)


def measured_layers(rec, quantity: str) -> list[int]:
    """Indices of the layers with any measured value of `quantity` (none if it is absent)."""
    if quantity not in rec:
        return []
    return np.flatnonzero(~np.isnan(rec[quantity]).all(axis=0)).tolist()


def check_activation_health(rec) -> dict[str, list[int]]:
    """quantity -> measured layer indices; ValueError when neither fraction was measured."""
    found = {q: measured_layers(rec, q) for q, _ in PANELS}
    if not any(found.values()):
        raise ValueError(HINT)
    return found


def _panel(ax: Axes, rec, quantity: str, indices: list[int], which: str) -> None:
    ax.set_ylabel(quantity, fontsize="small")
    ax.set_title(f"{quantity_label(quantity)} ({which})", fontsize="medium")
    if not indices:
        ax.text(0.5, 0.5, f"not measured (no {which})", ha="center", transform=ax.transAxes)
        return
    layer_lines(ax, rec, rec[quantity], indices, log=False)
    ax.set_ylim(*FRACTION_LIMITS)


def activation_health(rec) -> Figure:
    """saturated_frac (top) and dead_frac (bottom) per layer over steps.

    Args:
        rec: a Record with saturated_frac and/or dead_frac (arrays of shape
            (n_steps, n_layers)).

    Returns:
        the Figure with two axes sharing x; each has one line per layer where that fraction
        was measured (gid "layer:NAME"), or a note where no layer was.
    """
    found = check_activation_health(rec)
    fig = Figure(figsize=(FIGSIZE[0], FIGSIZE[1] * 1.5), layout="constrained")
    axes = fig.subplots(2, 1, sharex=True)
    for ax, (quantity, which) in zip(axes, PANELS):
        _panel(ax, rec, quantity, found[quantity], which)
    axes[0].set_xlabel("")
    axes[1].set_xlabel("step")
    fig.suptitle("Activation health per layer")
    return finished(axes)
