"""Learning speed per layer: lines over steps, and Nielsen's bar chart at one step.

Nielsen ("Neural Networks and Deep Learning", ch. 5) measures the speed at which layer l
learns by ||delta^l||, the norm of dC/dz^l: the Record's delta_norm.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from gradprobe.viz.figures.common import (
    OUTSIDE,
    bar_baseline,
    clip_linear,
    clip_log,
    depth_colours,
    draw_marks,
    finished,
    layer_bars,
    layer_indices,
    layer_ticks,
    new_axes,
    quantity_label,
    require,
    spans_decades,
    step_index,
)
from gradprobe.viz.figures.lines import layer_lines, measured_rows


def _what(quantity: str) -> str:
    return "Learning speed" if quantity == "delta_norm" else quantity


def speed_lines(
    rec,
    quantity: str = "delta_norm",
    layers: Sequence[str | int] | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Per-layer `quantity` over steps on a log y axis, one line per layer.

    Args:
        rec: a Record with `quantity` (array of shape (n_steps, n_layers)).
        quantity: the per-layer quantity; delta_norm is Nielsen's learning speed.
        layers: layer names or indices to draw; None: all. Coloured by depth, with a
            legend up to 10 layers and a colorbar beyond.
        ax: draw into these axes; None: a new Figure.

    Returns:
        the Figure. Lines have gid "layer:NAME"; x is the steps where the quantity was
        measured, y the Record's values (inf clipped and marked, see figures.common).
    """
    values = require(rec, quantity)
    indices = layer_indices(rec, layers)
    ax = new_axes(ax)
    layer_lines(ax, rec, values, indices, log=True)
    ax.set_ylabel(quantity_label(quantity))
    ax.set_title(f"{_what(quantity)} per layer over steps: {quantity}")
    return finished([ax])


def mean_over_steps(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Per-layer mean over the steps where each layer was measured (NaN: never).

    Args:
        values: array of shape (n_steps, n_layers).

    Returns:
        (mean of shape (n_layers,), number of steps where any layer was measured).
    """
    measured = ~np.isnan(values)
    counts = measured.sum(axis=0)
    sums = np.where(measured, values, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return mean, int(measured_rows(values).sum())


def bar_values(rec, quantity: str, step: int | None) -> tuple[np.ndarray, str]:
    """(per-layer values of shape (n_layers,), words saying which step or mean they are)."""
    values = require(rec, quantity)
    if step is None:
        mean, n = mean_over_steps(values)
        return mean, f"mean over {n} recorded step{'s' * (n != 1)}"
    row = values[step_index(rec, step)]
    if np.isnan(row).all():
        at = rec.steps[measured_rows(values)]
        raise ValueError(
            f"{quantity} was not measured at step {step}; it was at steps "
            f"{at[:8].tolist()}{' ...' if len(at) > 8 else ''}"
        )
    return row, f"at step {step}"


def speed_bars(
    rec, step: int | None = None, quantity: str = "delta_norm", ax: Axes | None = None
) -> Figure:
    """Nielsen's bar chart: per-layer `quantity` at `step`, one bar per layer.

    Args:
        rec: a Record with `quantity`.
        step: a recorded step number; None: each layer's mean over the recorded steps
            where it was measured. The title says which.
        quantity: the per-layer quantity (delta_norm: learning speed).
        ax: draw into these axes; None: a new Figure.

    Returns:
        the Figure: one BarContainer (label "layers"; beyond 100 layers a StepPatch, see
        common.layer_bars) whose heights are the values, log y when they span more than 2
        decades; inf clipped and marked.
    """
    heights, what = bar_values(rec, quantity, step)
    log = spans_decades(heights)
    plotted, marks = clip_log(heights) if log else clip_linear(heights)
    ax = new_axes(ax)
    x = np.arange(len(heights))
    colours = depth_colours(x, len(heights))
    baseline = bar_baseline(plotted, log)
    layer_bars(ax, plotted, label="layers", color=colours, baseline=baseline)
    if log:
        ax.set_yscale("log")
    draw_marks(ax, x, plotted, marks)
    if any(m.any() for m in marks.values()):
        ax.legend(**OUTSIDE)
    layer_ticks(ax, rec.layers)
    ax.set_ylabel(quantity_label(quantity))
    ax.set_title(f"{_what(quantity)} per layer, {what}: {quantity}")
    return finished([ax])
