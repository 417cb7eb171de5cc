"""Gradient flow: mean and max |grad| per layer on a log axis (the plot_grad_flow picture).

After the PyTorch forum's plot_grad_flow (RoshanRane, 2018): for each layer in forward
order, a bar of the largest |dC/dW| behind a bar of the mean; vanishing shows as bars
falling toward the input, exploding as bars climbing by decades.
"""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from gradprobe.viz.figures.common import (
    OUTSIDE,
    bar_baseline,
    clip_log,
    draw_marks,
    finished,
    layer_bars,
    layer_ticks,
    new_axes,
    require,
    step_index,
)

HINT = " (grad_abs_mean / grad_abs_max are measured on detail steps: see detail_every)"
BARS = (("grad_abs_max", "max |dC/dW|", "c"), ("grad_abs_mean", "mean |dC/dW|", "b"))


def check_gradient_flow(rec) -> tuple[np.ndarray, np.ndarray]:
    """(grad_abs_mean, grad_abs_max), each of shape (n_steps, n_layers); ValueError if absent."""
    return require(rec, "grad_abs_mean", HINT), require(rec, "grad_abs_max", HINT)


def flow_row(rec, step: int | None) -> tuple[int, dict[str, np.ndarray]]:
    """(row, {"grad_abs_mean": (n_layers,), "grad_abs_max": (n_layers,)}) at `step`.

    None: the last step where grad_abs_mean was measured.
    """
    mean, peak = check_gradient_flow(rec)
    measured = np.flatnonzero(~np.isnan(mean).all(axis=1))
    if step is None:
        row = int(measured[-1])
    else:
        row = step_index(rec, step)
        if row not in measured:
            near = rec.steps[measured][:8].tolist()
            raise ValueError(
                f"grad_abs_mean was not measured at step {step}{HINT}; it was at {near}"
            )
    return row, {"grad_abs_mean": mean[row], "grad_abs_max": peak[row]}


def gradient_flow(rec, step: int | None = None, ax: Axes | None = None) -> Figure:
    """Bars of max and mean |dC/dW| per layer at one step, on a log y axis.

    Args:
        rec: a Record with grad_abs_mean and grad_abs_max.
        step: a recorded step number where they were measured; None: the last such step.
        ax: draw into these axes; None: a new Figure.

    Returns:
        the Figure: two BarContainers (beyond 100 layers StepPatches, see
        common.layer_bars) labelled "max |dC/dW|" (behind) and "mean |dC/dW|",
        heights the Record's values at that step (inf clipped to the largest finite value
        and marked, values <= 0 to the smallest positive).
    """
    row, values = flow_row(rec, step)
    both = np.stack([values[q] for q, _, _ in BARS])  # (2, n_layers): one scale for both
    plotted, marks = clip_log(both)
    ax = new_axes(ax)
    x = np.arange(len(rec.layers))
    baseline = bar_baseline(plotted, log=True)
    for k, (_, label, colour) in enumerate(BARS):
        width = 0.8 - 0.4 * k  # the mean's bar inside the max's
        layer_bars(ax, plotted[k], label=label, color=colour, baseline=baseline, width=width)
    ax.set_yscale("log")
    draw_marks(ax, x[None, :], plotted, marks)
    ax.legend(**OUTSIDE)
    layer_ticks(ax, rec.layers)
    ax.set_ylabel("|dC/dW| (grad_abs_mean, grad_abs_max)")
    ax.set_title(f"Gradient flow at step {int(rec.steps[row])}: mean and max |grad| per layer")
    return finished([ax])
