"""Layer x step heatmap of log10 of a quantity: one picture for hundreds of layers."""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from gradprobe.viz.figures.common import (
    clip_log,
    draw_marks,
    finished,
    layer_ticks,
    new_axes,
    quantity_label,
    require,
    step_ticks,
)

HEATMAP_CMAP = "viridis"
NOT_MEASURED = "0.85"  # light grey: masked (NaN) cells stand apart from every colour


def log10_image(values: np.ndarray) -> tuple[np.ma.MaskedArray, dict[str, np.ndarray]]:
    """log10 of values.T, masked where NaN, and where values were clipped.

    Args:
        values: array of shape (n_steps, n_layers).

    Returns:
        (image of shape (n_layers, n_steps), marks): +inf cells hold the largest finite
        log10 and values <= 0 the smallest (see common.clip_log); marks has the image's
        shape.
    """
    plotted, marks = clip_log(values.T)
    image = np.ma.masked_invalid(np.log10(plotted))
    return image, marks


def speed_heatmap(rec, quantity: str = "delta_norm", ax: Axes | None = None) -> Figure:
    """Heatmap of log10 `quantity`: one row per layer (first at the top), one column per step.

    Args:
        rec: a Record with `quantity` (array of shape (n_steps, n_layers)).
        quantity: the per-layer quantity; delta_norm is Nielsen's learning speed.
        ax: draw into these axes; None: a new Figure.

    Returns:
        the Figure: an AxesImage whose array is the masked log10 of rec[quantity].T (NaN
        cells masked and drawn grey), a colorbar, and red markers on clipped inf cells.
    """
    values = require(rec, quantity)
    image, marks = log10_image(values)
    ax = new_axes(ax)
    cmap = colormaps[HEATMAP_CMAP].with_extremes(bad=NOT_MEASURED)
    shown = ax.imshow(image, cmap=cmap, aspect="auto", interpolation="nearest", origin="upper")
    rows, cols = np.indices(image.shape)
    draw_marks(ax, cols, rows.astype(float), marks)
    if any(m.any() for m in marks.values()):
        ax.legend(fontsize="small", loc="upper right")
    ax.figure.colorbar(shown, ax=ax, label=f"log10 {quantity_label(quantity)}")
    step_ticks(ax, rec.steps)
    layer_ticks(ax, rec.layers, axis="y")
    ax.set_title(f"log10 {quantity} per layer and step (grey: not measured)")
    return finished([ax])
