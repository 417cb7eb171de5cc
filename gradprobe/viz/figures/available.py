"""`available`: which figures a Record can draw, by the same checks the figures make."""

from __future__ import annotations

from collections.abc import Callable

from gradprobe.viz.figures.common import require
from gradprobe.viz.figures.curves import check_training_curves
from gradprobe.viz.figures.flow import check_gradient_flow
from gradprobe.viz.figures.health import check_activation_health
from gradprobe.viz.figures.histograms import check_grad_histograms
from gradprobe.viz.figures.through_time import check_through_time
from gradprobe.viz.figures.weights import check_weight_change


def _check_speed(rec) -> None:
    require(rec, "delta_norm")


# figure name -> the check it runs first (raises ValueError when the record lacks data),
# in the order a report shows them.
CHECKS: dict[str, Callable] = {
    "speed_lines": _check_speed,
    "speed_bars": _check_speed,
    "speed_heatmap": _check_speed,
    "weight_change": check_weight_change,
    "gradient_flow": check_gradient_flow,
    "activation_health": check_activation_health,
    "grad_histograms": check_grad_histograms,
    "through_time": check_through_time,
    "training_curves": check_training_curves,
}


def available(rec) -> list[str]:
    """The names of the figures (all but decision_surface) this record has the data for.

    Args:
        rec: a Record.

    Returns:
        names from speed_lines, speed_bars, speed_heatmap, weight_change, gradient_flow,
        activation_health, grad_histograms, through_time, training_curves, in that order.
    """
    names = []
    for name, check in CHECKS.items():
        try:
            check(rec)
        except ValueError:
            continue
        names.append(name)
    return names
