"""The gradient through time: ||dC/dh_t|| per time step of a recurrent layer.

rec.series["delta_norm_t"] is an array of shape (n_steps, n_layers, T), NaN-padded past a
sequence's length and NaN on steps and layers where it was not measured (recorded on
detail steps for nn.RNN / LSTM / GRU layers). Vanishing through time shows as the early
time steps' norms falling by decades below the last ones.
"""

from __future__ import annotations

import numpy as np
from matplotlib import cm, colormaps, colors
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from gradprobe.viz.figures.common import (
    MAX_LEGEND,
    OUTSIDE,
    clip_log,
    draw_marks,
    finished,
    layer_indices,
    new_axes,
    require_series,
    step_index,
)

HINT = " (recorded on detail steps for nn.RNN / LSTM / GRU layers)"
STEP_CMAP = "plasma"  # training step as colour: early dark, late bright


def check_through_time(rec) -> np.ndarray:
    """rec.series["delta_norm_t"]; ValueError when absent or never measured."""
    return require_series(rec, "delta_norm_t", HINT)


def pick_layer(rec, series: np.ndarray, layer: str | int | None) -> int:
    """The layer's column: `layer`, or the first with any measured value when None."""
    measured = np.flatnonzero(~np.isnan(series).all(axis=(0, 2)))
    if layer is None:
        return int(measured[0])
    i = layer_indices(rec, [layer])[0]
    if i not in measured:
        held = [rec.layers[k] for k in measured]
        raise ValueError(f"delta_norm_t was not measured for layer {layer!r}; it was for {held}")
    return i


def pick_rows(rec, series: np.ndarray, i: int, step: int | None) -> np.ndarray:
    """Rows (steps) of layer i to draw: `step`'s, or every step where it was measured."""
    measured = np.flatnonzero(~np.isnan(series[:, i]).all(axis=1))
    if step is None:
        return measured
    row = step_index(rec, step)
    if row not in measured:
        near = rec.steps[measured][:8].tolist()
        raise ValueError(f"delta_norm_t was not measured at step {step}; it was at {near}")
    return np.array([row])


def _key(ax: Axes, steps: np.ndarray, colour_of: cm.ScalarMappable) -> None:
    if len(steps) <= MAX_LEGEND:
        ax.legend(title="training step", **OUTSIDE)
        return
    ax.figure.colorbar(colour_of, ax=ax, label="training step")
    keyed = [h for h in ax.get_lines() if h.get_gid() == "inf"]
    if keyed:
        ax.legend(handles=keyed, **OUTSIDE)


def through_time(
    rec, layer: str | int | None = None, step: int | None = None, ax: Axes | None = None
) -> Figure:
    """||dC/dh_t|| over the time steps t of one recurrent layer, log y.

    Args:
        rec: a Record with series delta_norm_t (array of shape (n_steps, n_layers, T)).
        layer: layer name or index; None: the first layer where it was measured.
        step: one recorded step number; None: one line per step where it was measured,
            coloured by step.
        ax: draw into these axes; None: a new Figure.

    Returns:
        the Figure: one line per drawn step (gid "step:N"), x = t (0..T-1), y the series
        row (NaN padding left as gaps, inf clipped and marked).
    """
    series = check_through_time(rec)
    i = pick_layer(rec, series, layer)
    rows = pick_rows(rec, series, i, step)
    plotted, marks = clip_log(series[rows, i])  # (n_rows, T)
    steps = rec.steps[rows]
    ax = new_axes(ax)
    norm = colors.Normalize(float(steps.min()), float(max(steps.max(), steps.min() + 1)))
    colour_of = cm.ScalarMappable(norm=norm, cmap=colormaps[STEP_CMAP])
    t = np.arange(series.shape[2])
    for k, s in enumerate(steps):
        ax.plot(t, plotted[k], color=colour_of.to_rgba(s), gid=f"step:{s}", label=f"step {s}")
    ax.set_yscale("log")
    draw_marks(ax, t[None, :], plotted, marks)
    _key(ax, steps, colour_of)
    ax.set_xlabel("time step t")
    ax.set_ylabel("delta_norm_t (||dC/dh_t||)")
    ax.set_title(f"Gradient through time, layer {rec.layers[i]}: delta_norm_t per time step")
    return finished([ax])
