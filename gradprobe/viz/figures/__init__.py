"""Figures (matplotlib, object-oriented API: no pyplot, no global state).

Each function takes a Record (decision_surface: a model and its data) and returns a
matplotlib Figure; those that draw one axes take `ax=` to draw into an existing one.
Missing data raises ValueError naming what is missing and how to record it.
"""

from __future__ import annotations

from gradprobe.viz.figures.available import available
from gradprobe.viz.figures.curves import training_curves
from gradprobe.viz.figures.flow import gradient_flow
from gradprobe.viz.figures.health import activation_health
from gradprobe.viz.figures.heatmap import speed_heatmap
from gradprobe.viz.figures.histograms import grad_histograms
from gradprobe.viz.figures.published import published_vs_ours
from gradprobe.viz.figures.speed import speed_bars, speed_lines
from gradprobe.viz.figures.surface import decision_surface
from gradprobe.viz.figures.through_time import through_time
from gradprobe.viz.figures.weights import weight_change

__all__ = [
    "activation_health",
    "available",
    "decision_surface",
    "grad_histograms",
    "gradient_flow",
    "published_vs_ours",
    "speed_bars",
    "speed_heatmap",
    "speed_lines",
    "through_time",
    "training_curves",
    "weight_change",
]
