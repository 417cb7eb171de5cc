"""Predicted against measured per-layer log-gain, and where they part.

The measured gain of layer l at a recorded step is ln(delta_norm[l]^2 / delta_norm[l+1]^2)
from a Record (anything with `.layers`, `.steps` and `["delta_norm"]` of shape
(n_steps, n_layers)); it is compared with `Prediction["log_gain"]` layer by layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gradprobe.theory.prediction import Prediction

# A layer parts from the theory beyond 3 sd of the finite-width spread of one network's
# gain (sqrt(kappa / n), Hanin 2018), and never closer than the check table's per-layer
# agreement of 0.03 (THEORY.md: width 256, 10 seeds x 32 inputs).
N_SD = 3.0
MIN_TOL = 0.03
INIT_REASON = (
    "parts from mean field beyond the finite-width spread: a batch-summed delta of "
    "correlated inputs, a small width, or a module the spec does not see"
)
TRAINED_REASON = (
    "after training starts the gain reflects learned alignment of weights and "
    "activations, not the random-init theory"
)


@dataclass(frozen=True)
class Comparison:
    """Per layer pair (l, l+1): predicted and measured log-gain, and the verdict.

    Attributes:
        layers: the upper layer of each pair, forward order (list of n names).
        predicted, measured, diff, tol: arrays of shape (n,); diff = measured - predicted.
        parted: bool array of shape (n,), |diff| > tol.
        steps: the recorded steps averaged (first ones by default).
        reason: why parted layers part, given the steps.
    """

    layers: list[str]
    predicted: np.ndarray
    measured: np.ndarray
    diff: np.ndarray
    tol: np.ndarray
    parted: np.ndarray
    steps: list[int]
    reason: str

    def __repr__(self) -> str:
        bad = [n for n, p in zip(self.layers, self.parted) if p]
        return (
            f"Comparison({len(self.layers)} layers at steps {self.steps}, "
            f"max |diff| {np.nanmax(np.abs(self.diff)) if len(self.diff) else math.nan:.3g}, "
            f"parted: {', '.join(bad) or 'none'})"
        )

    def rows(self) -> list[dict]:
        """One dict per layer: layer, predicted, measured, diff, tol, parted."""
        keys = ("predicted", "measured", "diff", "tol")
        return [
            {
                "layer": n,
                **{k: float(getattr(self, k)[i]) for k in keys},
                "parted": bool(self.parted[i]),
            }
            for i, n in enumerate(self.layers)
        ]

    def summary(self) -> str:
        """One line: agreement, or which layers part and why."""
        bad = [n for n, p in zip(self.layers, self.parted) if p]
        if not bad:
            worst = np.nanmax(np.abs(self.diff)) if len(self.diff) else math.nan
            return (
                f"prediction and measurement agree at steps {self.steps} (max |diff| {worst:.3g})"
            )
        return f"{', '.join(bad)} part from the prediction at steps {self.steps}: {self.reason}"

    def to_dict(self) -> dict:
        """JSON-ready (nan as None)."""

        def clean(x: float):
            return x if math.isfinite(x) else None

        rows = [
            {k: clean(v) if isinstance(v, float) else v for k, v in r.items()} for r in self.rows()
        ]
        return {"steps": self.steps, "reason": self.reason, "rows": rows}


def measured_log_gain(record, layers: list[str], rows: np.ndarray) -> np.ndarray:
    """Mean over `rows` (step indices) of ln(delta_norm[l]^2 / delta_norm[l+1]^2).

    Args:
        record: has `.layers` and `["delta_norm"]` of shape (n_steps, n_layers).
        layers: names in forward order, each in record.layers.
        rows: indices of recorded steps.

    Returns:
        array of shape (len(layers) - 1,); nan where not measured.
    """
    index = [record.layers.index(n) for n in layers]
    dn = np.asarray(record["delta_norm"], dtype=float)[np.ix_(rows, index)]  # (n_rows, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        gains = 2 * (np.log(dn[:, :-1]) - np.log(dn[:, 1:]))
    gains[~np.isfinite(gains)] = np.nan
    if not len(rows):
        return np.full(len(layers) - 1, np.nan)
    counts = np.sum(~np.isnan(gains), axis=0)  # a pair never measured stays NaN, silently
    return np.where(counts > 0, np.nansum(gains, axis=0) / np.maximum(counts, 1), np.nan)


def compare(
    prediction: Prediction, record, *, first: int = 1, step: int | None = None
) -> Comparison:
    """Predicted vs measured per-layer log-gain for the layers both hold.

    Args:
        prediction: from `predict` (or `predict_run`).
        record: a gradprobe Record with "delta_norm".
        first: average the first `first` recorded steps (the init) ...
        step: ... or this one recorded step instead.

    Returns:
        A Comparison.

    Raises:
        ValueError: no delta_norm, fewer than two common layers, a bad step or `first`.
    """
    if "delta_norm" not in record:
        raise ValueError("the record has no delta_norm: nothing to compare with")
    steps = np.asarray(record.steps)
    if step is not None:
        rows = np.flatnonzero(steps == step)
        if not rows.size:
            raise ValueError(f"step={step!r} is not a recorded step ({steps[0]}..{steps[-1]})")
    elif isinstance(first, bool) or not isinstance(first, int) or first < 1:
        raise ValueError(f"first={first!r} must be an int >= 1")
    else:
        rows = np.arange(min(first, len(steps)))
    layers = [n for n in prediction.layers if n in record.layers]
    if len(layers) < 2:
        raise ValueError(
            f"the prediction's layers {prediction.layers[:4]}... and the record's "
            f"{record.layers[:4]}... share fewer than two names"
        )
    where = [prediction.layers.index(n) for n in layers]
    cum, cum_sd = prediction["cum_log_gain"], prediction["cum_sd"]
    predicted = cum[where[:-1]] - cum[where[1:]]  # sums the gains of layers the record lacks
    sd = np.sqrt(np.clip(cum_sd[where[:-1]] ** 2 - cum_sd[where[1:]] ** 2, 0, None))
    measured = measured_log_gain(record, layers, rows)
    diff = measured - predicted
    tol = np.maximum(MIN_TOL, N_SD * np.nan_to_num(sd, nan=0.0))
    used = [int(s) for s in steps[rows]]
    return Comparison(
        layers=layers[:-1],
        predicted=predicted,
        measured=measured,
        diff=diff,
        tol=tol,
        parted=np.abs(np.nan_to_num(diff, nan=0.0)) > tol,
        steps=used,
        reason=TRAINED_REASON if used and max(used) > 0 else INIT_REASON,
    )
