"""The report's theory section: a run's predicted against measured per-layer log-gain.

Given a `gradprobe.theory.Prediction` for a run (the command line makes one with the lab's
`predict_run` for the runs the theory covers), the section holds the prediction's verdict,
`compare(prediction, record)`'s table and summary, what to make of a layer that parts,
and the figure `predicted_vs_measured`. gradprobe.theory is imported only when a
Prediction is given (it loads torch; whoever made the Prediction has loaded it already).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gradprobe.viz import report_embed, report_text

COLUMNS = ("predicted", "measured", "diff", "tol")
TITLE = "Predicted vs measured log-gain"
CAPTION = (
    "ln(‖δˡ‖² / ‖δˡ⁺¹‖²) per layer: the mean-field prediction at initialisation (line, "
    "with the band within which the two agree) and the Record's delta_norm (dots); "
    "layers that part are ringed."
)
TOL_TEXT = (
    "diff = measured − predicted; a layer parts when |diff| > tol, 3 sd of the finite-width "
    "spread of one network's gain, at least 0.03 (gradprobe.theory.compare)."
)
# The engineer of gradprobe.theory: the probe's delta_norm is the norm of the batch-summed
# delta (DESIGN.md, "Quantities"), while the theory's ||delta^l||^2 is one example's.
BATCH_NOTE = (
    "delta_norm is the norm of the batch-summed δ (Nielsen's ‖δˡ‖): summing a batch adds "
    "cross terms between its examples that the per-example theory leaves out, so inputs "
    "that are alike shift the measured gain a little even at initialisation."
)
TRAINED_NOTE = (
    "Measured after training started (steps {steps}): where measurement and prediction "
    "part, the weights have learned an alignment with the data and with each other. "
    "That is learning, not a failure of the theory, which describes random weights."
)


@dataclass(frozen=True, repr=False)
class TheoryView:
    """What the template shows of one run's prediction.

    Attributes:
        verdict: the prediction's one-line verdict.
        summary: the Comparison's one line ("" when not compared).
        notes: sentences on how to read a layer that parts.
        rows: per layer pair: {"layer", "parted", "cells": [{"quantity", "value", "text"}]}.
        figure: the embedded figure, or None when not compared.
        error: why the prediction could not be compared with the record; "" otherwise.
    """

    verdict: str
    summary: str = ""
    notes: list[str] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    figure: report_embed.Embedded | None = None
    error: str = ""

    @property
    def tol_text(self) -> str:
        """What diff, tol and parting mean, under the table."""
        return TOL_TEXT

    @property
    def n_parted(self) -> int:
        """Layers that part from the prediction."""
        return sum(row["parted"] for row in self.rows)

    def __repr__(self) -> str:
        if self.error:
            return f"TheoryView(not compared: {self.error})"
        return f"TheoryView({len(self.rows)} layers, {self.n_parted} parted)"


def check_predictions(predictions: Sequence[Any]) -> list:
    """`predictions` (one per run) if each is a Prediction or None; else TypeError."""
    given = [p for p in predictions if p is not None]
    if not given:
        return list(predictions)
    from gradprobe.theory.prediction import Prediction

    for i, p in enumerate(predictions):
        if p is not None and not isinstance(p, Prediction):
            raise TypeError(
                f"predictions[{i}] must be a gradprobe.theory.Prediction or None; "
                f"got {type(p).__name__}"
            )
    return list(predictions)


def _cell(quantity: str, value: float) -> dict[str, str]:
    return {"quantity": quantity, "value": repr(value), "text": report_text.number(value)}


def table_rows(comparison) -> list[dict]:
    """The Comparison's rows as the template shows them (values as repr for data-value)."""
    return [
        {
            "layer": row["layer"],
            "parted": row["parted"],
            "cells": [_cell(q, float(row[q])) for q in COLUMNS],
        }
        for row in comparison.rows()
    ]


def _figure(comparison, prefix: str) -> report_embed.Embedded:
    from gradprobe.viz.figures.theory import predicted_vs_measured

    name = "predicted_vs_measured"
    try:
        fig = predicted_vs_measured(comparison)
    except ValueError as err:
        return dataclasses.replace(report_embed.missing(name, str(err)), title=TITLE)
    embedded = report_embed.embed(name, fig, prefix)
    return dataclasses.replace(embedded, title=TITLE, caption=CAPTION)


def theory_view(prediction, rec, prefix: str) -> TheoryView | None:
    """The section of one run; None without a prediction (a run the theory does not cover).

    Args:
        prediction: a gradprobe.theory.Prediction, or None.
        rec: the run's Record.
        prefix: unique per run, for the figure's SVG ids.
    """
    if prediction is None:
        return None
    from gradprobe.theory.compare import compare

    try:
        comparison = compare(prediction, rec)
    except ValueError as err:  # no delta_norm, no common layers
        return TheoryView(verdict=prediction.verdict(), error=str(err))
    notes = [BATCH_NOTE]
    if comparison.steps and max(comparison.steps) > 0:
        steps = ", ".join(str(s) for s in comparison.steps)
        notes.insert(0, TRAINED_NOTE.format(steps=steps))
    return TheoryView(
        verdict=prediction.verdict(),
        summary=comparison.summary(),
        notes=notes,
        rows=table_rows(comparison),
        figure=_figure(comparison, prefix),
    )
