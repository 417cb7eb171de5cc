"""gradprobe.viz: figures (matplotlib), the HTML report and TensorBoard export.

    from gradprobe import viz
    fig = viz.speed_lines(rec)           # a matplotlib Figure; fig.savefig("speed.svg")
    viz.available(rec)                   # the figures this record can draw

Names load on first use (PEP 562), so importing this package, or a light submodule such as
`gradprobe.viz.tensorboard`, does not import matplotlib; `import gradprobe` never imports viz.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# The figure functions: a contract the report and the command line code against.
FIGURES = (
    "speed_lines",
    "speed_bars",
    "speed_heatmap",
    "weight_change",
    "gradient_flow",
    "activation_health",
    "grad_histograms",
    "through_time",
    "decision_surface",
    "training_curves",
    "available",
)

# public name -> module that defines it
_EXPORTS = {name: "gradprobe.viz.figures" for name in FIGURES}
_EXPORTS["write_report"] = "gradprobe.viz.report"  # issue 5: `write_report(...)` in Python
# issue 7: takes a theory Comparison, not a Record, so it is not one of FIGURES
_EXPORTS["predicted_vs_measured"] = "gradprobe.viz.figures.theory"
# issue 6: take a Reproduction (published figures beside ours), not a Record
_EXPORTS["published_vs_ours"] = "gradprobe.viz.figures.published"
_EXPORTS["write_reproduction_report"] = "gradprobe.viz.report_reproduce"

if TYPE_CHECKING:
    from gradprobe.viz.figures import (
        activation_health,
        available,
        decision_surface,
        grad_histograms,
        gradient_flow,
        speed_bars,
        speed_heatmap,
        speed_lines,
        through_time,
        training_curves,
        weight_change,
    )
    from gradprobe.viz.figures.published import published_vs_ours
    from gradprobe.viz.figures.theory import predicted_vs_measured
    from gradprobe.viz.report import write_report
    from gradprobe.viz.report_reproduce import write_reproduction_report

__all__ = [
    "activation_health",
    "available",
    "decision_surface",
    "grad_histograms",
    "gradient_flow",
    "predicted_vs_measured",
    "published_vs_ours",
    "speed_bars",
    "speed_heatmap",
    "speed_lines",
    "through_time",
    "training_curves",
    "weight_change",
    "write_report",
    "write_reproduction_report",
]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gradprobe.viz' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
