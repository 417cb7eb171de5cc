"""Update-ratio rules: ||dW|| / ||W|| per step far above or below CS231n's ~1e-3.

A ratio is "sustained" when it is the median over at least update_min_points detail
steps of a layer (before any non-finite step). Too large is per layer. Too small is
about the learning rate, so it needs every layer below the threshold, the best-fed one
included: slow layers under a vanishing gradient are that finding's business.
"""

from __future__ import annotations

import numpy as np

from gradprobe.diagnose.finding import Finding
from gradprobe.diagnose.rules.cause import CLIP_FIX
from gradprobe.diagnose.rules.common import fmt, healthy_rows, nanmedian
from gradprobe.diagnose.thresholds import Thresholds
from gradprobe.record.record import Record

# Karpathy, CS231n "Neural Networks Part 3": an update ratio "somewhere around 1e-3".
HEALTHY = 1e-3


def sustained_ratios(rec: Record, th: Thresholds) -> tuple[np.ndarray, np.ndarray]:
    """Per layer the median update ratio (NaN with too few measurements), and the rows."""
    limit = healthy_rows(rec)
    ratio = rec["update_ratio"][:limit]
    with np.errstate(all="ignore"):
        ratio = np.where(np.isfinite(ratio), ratio, np.nan)
    counts = np.isfinite(ratio).sum(axis=0)
    # the run may hold fewer measurements than update_min_points (cut short by a NaN)
    needed = min(th.update_min_points, int(counts.max(initial=0)))
    median = np.where(counts >= max(needed, 1), nanmedian(ratio, axis=0), np.nan)
    rows = np.flatnonzero(np.isfinite(ratio).any(axis=1))
    return median, rows


def update_rule(rec: Record, th: Thresholds) -> list[Finding]:
    """update_too_large (per layer) and update_too_small (model-wide) findings."""
    if "update_ratio" not in rec:
        return []
    median, rows = sustained_ratios(rec, th)
    measured = np.isfinite(median)
    if not measured.any():
        return []
    steps = [int(s) for s in rec.steps[rows]]
    findings = []
    large = np.flatnonzero(measured & (median > th.update_large))
    if large.size:
        findings.append(_finding(rec, "update_too_large", large, median, steps))
    small = np.flatnonzero(measured & (median < th.update_small))
    if small.size == measured.sum():  # even the best-fed layer barely moves
        findings.append(_finding(rec, "update_too_small", small, median, steps))
    return findings


def _finding(rec: Record, kind: str, cols: np.ndarray, median, steps) -> Finding:
    names = [rec.layers[c] for c in cols]
    evidence = {"update_ratio": {rec.layers[c]: float(median[c]) for c in cols}}
    evidence["model_median"] = float(nanmedian(median))
    large = kind == "update_too_large"
    worst = float(median[cols].max() if large else median[cols].min())
    summary = f"median update ratio {fmt(worst)} per step (healthy ~1e-3)"
    if large:
        cause = "too large a learning rate: each step rewrites a large share of the weights"
        fix = f"lower the learning rate by {fmt(worst / HEALTHY)}x toward a ratio of 1e-3"
        fix += f", or {CLIP_FIX}"
    elif worst > 0:
        cause = "too small a learning rate: the weights barely move"
        fix = f"raise the learning rate by {fmt(HEALTHY / worst)}x toward a ratio of 1e-3"
    else:
        cause = "the weights do not move at all"
        fix = "check that the optimizer holds these parameters and its learning rate is > 0"
    return Finding(kind, names, steps, "warning", evidence, cause, fix, summary=summary)
