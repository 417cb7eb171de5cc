"""Non-finite values: the first step and layer of a NaN/Inf, forward or backward, and why.

Where and when come from `Record.first_nonfinite()`. The likely cause is read from the
steps before it: a loss or gradient norm that grew by an order of magnitude first means
the optimizer overshot (learning rate too large); a NaN out of a steady run is a single
operation that overflowed or took the log of 0 (forward), or a derivative that is
infinite where it was evaluated (backward).
"""

from __future__ import annotations

import math

import numpy as np

from gradprobe.diagnose.finding import Finding
from gradprobe.diagnose.rules.cause import CLIP_FIX
from gradprobe.diagnose.rules.common import fmt, nanmedian
from gradprobe.diagnose.thresholds import Thresholds
from gradprobe.record.record import Record


def _growth(x: np.ndarray, window: int) -> float:
    """Largest of the last `window` finite values over the median of the first ones."""
    finite = x[np.isfinite(x)]
    if finite.size < 2:
        return math.nan
    early = float(nanmedian(finite[:window]))
    late = float(np.max(finite[-window:]))
    return late / early if early > 0 else math.nan


def _grad_norms(rec: Record) -> np.ndarray:
    """Global gradient norm per step: the recorded one, else from the per-layer norms."""
    norms = rec.global_grad_norm
    if np.isfinite(norms).any() or "grad_norm" not in rec:
        return norms
    with np.errstate(all="ignore"):
        total = np.sqrt(np.nansum(rec["grad_norm"] ** 2, axis=1))
    return np.where(np.isfinite(rec["grad_norm"]).any(axis=1), total, np.nan)


def nonfinite_rule(rec: Record, th: Thresholds) -> list[Finding]:
    """One `nonfinite` finding (severity error) when a NaN or Inf appeared."""
    bad = rec.first_nonfinite()
    if bad is None:
        return []
    before = int(np.searchsorted(rec.steps, bad["step"]))
    loss_growth = _growth(rec.loss[:before], th.window)
    grad_growth = _growth(_grad_norms(rec)[:before], th.window)
    grew = any(g >= th.growth_before_nonfinite for g in (loss_growth, grad_growth))
    evidence = {
        "step": bad["step"],
        "layer": bad["layer"],
        "where": bad["where"],
        "loss_growth_before": loss_growth,
        "grad_norm_growth_before": grad_growth,
        "steps_before": before,
    }
    cause, fix = _explain(bad["where"], grew, loss_growth, grad_growth)
    where = "in the loss" if bad["where"] == "loss" else f"in the {bad['where']} pass"
    summary = f"first NaN/Inf at step {bad['step']} {where}"
    layers = [] if bad["layer"] is None else [bad["layer"]]
    return [
        Finding("nonfinite", layers, [bad["step"]], "error", evidence, cause, fix, summary=summary)
    ]


def _explain(where: str, grew: bool, loss_growth: float, grad_growth: float):
    if grew:
        return (
            f"too large a learning rate: before the NaN the loss grew x{fmt(loss_growth)} "
            f"and the gradient norm x{fmt(grad_growth)}",
            f"lower the learning rate by 10x, and {CLIP_FIX}",
        )
    if where in ("forward", "loss"):
        return (
            "overflow in exp or the log of 0 in the forward pass, e.g. the log of a softmax "
            "or sigmoid that underflowed to 0 (log(softmax(x)) = -inf), with no growth before",
            "compute log-probabilities with F.log_softmax / F.cross_entropy on the logits "
            "(log-sum-exp) instead of log(softmax(x)), or clamp before log "
            "(p.clamp_min(1e-12))",
        )
    return (
        "a derivative that is infinite where it was taken (sqrt or log at 0, a division by a "
        "norm of 0) or a wrong custom backward, with a finite forward and no growth before",
        "add an epsilon inside sqrt / log / divisions, and run gp.gradcheck(model, batch, "
        "loss_fn) to find a wrong backward",
    )
