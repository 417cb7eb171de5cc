"""Predicted against measured per-layer log-gain: the mean-field theory beside the Record.

The gain of layer l is ln(||delta^l||^2 / ||delta^{l+1}||^2): positive where the gradient
grows on its way back to the input, negative where it shrinks. The prediction is
`gradprobe.theory.predict`'s, the measurement a Record's delta_norm, paired layer by layer
by `gradprobe.theory.compare` (a Comparison), which also gives each layer's tolerance (the
finite-width band) and which layers part.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from gradprobe.viz.figures.common import OUTSIDE, finished, layer_ticks, new_axes

if TYPE_CHECKING:
    from gradprobe.theory.compare import Comparison

# Colours: the theory in grey-blue with its band, the measurement in black, a layer that
# parts ringed in red (the report's error colour, templates/report.html.j2 --error).
PREDICTED = "#175cd3"
MEASURED = "#1d2433"
PARTED = "#b42318"
GAIN_LABEL = r"log-gain $\ln(\|\delta^l\|^2 / \|\delta^{l+1}\|^2)$"


def _check(comparison) -> None:
    from gradprobe.theory.compare import Comparison  # loaded already: a Comparison exists

    if not isinstance(comparison, Comparison):
        raise TypeError(
            "predicted_vs_measured needs a gradprobe.theory.Comparison (from "
            f"compare(prediction, record)); got {type(comparison).__name__}"
        )
    if not len(comparison.layers):
        raise ValueError("the comparison holds no layer pair: nothing to draw")


def predicted_vs_measured(comparison: Comparison, ax: Axes | None = None) -> Figure:
    """Per layer: the predicted log-gain with its band, the measured one, parted layers ringed.

    Args:
        comparison: from `gradprobe.theory.compare(prediction, record)`; its arrays
            predicted, measured and tol have shape (n,), one entry per layer pair (l, l+1),
            named by the upper layer l in `comparison.layers`.
        ax: draw into these axes; None: a new Figure.

    Returns:
        the Figure. Artists by gid: "predicted" (line, y = comparison.predicted),
        "measured" (markers, y = comparison.measured; NaN, not measured, is a gap),
        "band" (predicted +- tol, the tolerance within which they agree), "parted"
        (rings at the measured value of the layers that part), "unit_gain" (y = 0).
        x is 0..n-1 in forward order.

    Raises:
        TypeError: `comparison` is not a Comparison. ValueError: it holds no layer.
    """
    _check(comparison)
    predicted = np.asarray(comparison.predicted, dtype=float)
    measured = np.asarray(comparison.measured, dtype=float)
    tol = np.asarray(comparison.tol, dtype=float)
    x = np.arange(len(predicted))
    ax = new_axes(ax)
    ax.axhline(0.0, color="grey", linewidth=0.8, linestyle="--", gid="unit_gain")
    ax.fill_between(
        x, predicted - tol, predicted + tol, color=PREDICTED, alpha=0.18, linewidth=0,
        gid="band", label="agreement band (predicted ± tol)",
    )  # fmt: skip
    ax.plot(x, predicted, color=PREDICTED, marker=".", gid="predicted", label="predicted")
    ax.plot(
        x, measured, color=MEASURED, marker="o", markersize=4, linestyle="none",
        gid="measured", label="measured",
    )  # fmt: skip
    parted = np.asarray(comparison.parted, dtype=bool)
    if parted.any():
        ax.plot(
            x[parted], measured[parted], linestyle="none", marker="o", markersize=10,
            markerfacecolor="none", markeredgecolor=PARTED, gid="parted",
            label="parts from the prediction",
        )  # fmt: skip
    layer_ticks(ax, comparison.layers)
    ax.set_xlabel("layer l, forward order (gain from layer l+1 back to l)")
    ax.set_ylabel(GAIN_LABEL)
    steps = ", ".join(str(s) for s in comparison.steps)
    word = "step" if len(comparison.steps) == 1 else "steps"
    ax.set_title(f"Predicted vs measured log-gain per layer ({word} {steps})")
    ax.legend(**OUTSIDE)
    return finished([ax])
