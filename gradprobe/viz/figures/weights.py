"""Per-layer weight change per step with the cost below it (the weight-change plot).

The LazyProgrammer picture: mean |W_t - W_{t-1}| per layer against the cost, where the
layers near the input barely move while the cost falls, in a deep sigmoid network.
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
    mark_first_nonfinite,
    quantity_label,
    require,
    spans_decades,
)
from gradprobe.viz.figures.lines import layer_lines

HINT = " (weight_change=True in gp.watch; measured on detail steps)"


def check_weight_change(rec) -> np.ndarray:
    """rec["weight_change_mean"]; ValueError saying how to record it when it is missing."""
    return require(rec, "weight_change_mean", HINT)


def loss_line(ax: Axes, rec) -> None:
    """rec.loss over rec.steps (gid "loss"); log y when positive and spanning decades."""
    loss = rec.loss
    measured = ~np.isnan(loss)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (cost C)")
    if not measured.any():
        ax.text(0.5, 0.5, "no loss logged (probe.log_loss)", ha="center", transform=ax.transAxes)
        return
    steps, loss = rec.steps[measured], loss[measured]
    log = spans_decades(loss) and bool((loss[np.isfinite(loss)] > 0).all())
    plotted, marks = clip_log(loss) if log else clip_linear(loss)
    ax.plot(steps, plotted, color="black", gid="loss", label="loss")
    if log:
        ax.set_yscale("log")
    draw_marks(ax, steps, plotted, marks)
    mark_first_nonfinite(ax, rec)


def weight_change(rec) -> Figure:
    """Mean |weight change| per layer per step (log y), and the cost below, sharing x.

    Args:
        rec: a Record with weight_change_mean (array of shape (n_steps, n_layers)) and,
            for the lower axes, a logged loss.

    Returns:
        the Figure with two axes: the top one has a line per layer (gid "layer:NAME") of
        weight_change_mean at the steps it was measured; the bottom one the loss (gid
        "loss") at the steps it was logged, or a note saying none was.
    """
    values = check_weight_change(rec)
    fig = Figure(figsize=(FIGSIZE[0], FIGSIZE[1] * 1.5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    layer_lines(top, rec, values, range(len(rec.layers)), log=True)
    top.set_xlabel("")
    top.set_ylabel(quantity_label("weight_change_mean"))
    top.set_title("Weight change per layer per step, and the cost")
    loss_line(bottom, rec)
    return finished([top, bottom])
