"""One line per layer of a quantity over steps: the drawing under several figures."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from gradprobe.viz.figures.common import (
    clip_linear,
    clip_log,
    depth_colours,
    depth_key,
    draw_marks,
    mark_first_nonfinite,
)

# Dots on each recorded step up to this many steps; beyond, they merge into a thick line.
MAX_DOTTED_STEPS = 60


def measured_rows(values: np.ndarray) -> np.ndarray:
    """Boolean array of shape (n_steps,): steps where any layer's value was measured.

    Detail quantities are measured on some steps only; drawing only those steps joins
    them into lines instead of isolated dots between NaN gaps.
    """
    return ~np.isnan(values).all(axis=1)


def layer_lines(
    ax: Axes, rec, values: np.ndarray, indices: Sequence[int], *, log: bool
) -> list[Line2D]:
    """Draw values[:, i] over rec.steps for each layer index i, one line (gid "layer:NAME").

    Args:
        ax: where to draw.
        rec: the Record the values come from (for steps, layer names, non-finite step).
        values: array of shape (n_steps, n_layers).
        indices: the layer columns to draw.
        log: log y axis (values <= 0 clipped and marked) instead of linear.

    Returns:
        the lines, in the order of `indices`; x is the measured steps, y the values there
        (with +inf clipped and marked as common.clip_log / clip_linear describe).
    """
    rows = measured_rows(values)
    steps = rec.steps[rows]
    block = values[rows][:, list(indices)]
    plotted, marks = clip_log(block) if log else clip_linear(block)
    colours = depth_colours(indices, len(rec.layers))
    marker = "." if len(steps) <= MAX_DOTTED_STEPS else None
    lines = []
    for j, i in enumerate(indices):
        name = rec.layers[i]
        unmeasured = np.isnan(block[:, j]).all()
        (line,) = ax.plot(
            steps,
            plotted[:, j],
            color=colours[j],
            marker=marker,
            gid=f"layer:{name}",
            label=f"{name} (not measured)" if unmeasured else name,
        )
        lines.append(line)
    if log:
        ax.set_yscale("log")
    draw_marks(ax, steps[:, None], plotted, marks)
    mark_first_nonfinite(ax, rec)
    depth_key(ax, len(indices), len(rec.layers))
    ax.set_xlabel("step")
    return lines
