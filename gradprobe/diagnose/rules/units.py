"""Unit rules: saturated sigmoid/tanh units and dead ReLU units.

saturated_frac and dead_frac are measured on detail steps only; a layer's value is the
median over its measurements in the early window and, separately, the late one (units
die or saturate during training as often as at init), and the worse window is reported.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from gradprobe.diagnose.finding import Finding
from gradprobe.diagnose.rules.common import (
    activation_kind,
    healthy_rows,
    measured_rows,
    nanmedian,
)
from gradprobe.diagnose.thresholds import Thresholds
from gradprobe.record.record import Record

# kind, quantity, activations it applies to, threshold names (warning, error)
RULES = (
    ("saturation", "saturated_frac", ("sigmoid", "tanh"), "saturated_frac", "saturated_frac_error"),
    ("dead_units", "dead_frac", ("relu",), "dead_frac", "dead_frac_error"),
)
_EARLY_LATE = 2  # windows of the measured rows read: the first and the last


def unit_fractions(x: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Per layer the worse of the early and late window medians, and the rows it came from.

    Args:
        x: array of shape (n_steps, n_layers) of fractions, NaN where not measured.
        window: measurements per window.
    """
    rows = measured_rows(x, len(x))
    if rows.size == 0:
        return np.full(x.shape[1], np.nan), rows
    early, late = rows[:window], rows[-window:]
    med_early, med_late = nanmedian(x[early], axis=0), nanmedian(x[late], axis=0)
    use_late = np.nan_to_num(med_late, nan=-1) > np.nan_to_num(med_early, nan=-1)
    return np.where(use_late, med_late, med_early), late if use_late.any() else early


def units_rule(rec: Record, th: Thresholds) -> list[Finding]:
    """saturation and dead_units findings, one per kind, listing the layers."""
    findings = []
    limit = healthy_rows(rec)
    kinds = [activation_kind(info) for info in rec.layer_info]
    for kind, quantity, activations, warn, error in RULES:
        if quantity not in rec:
            continue
        frac, rows = unit_fractions(rec[quantity][:limit], th.window * _EARLY_LATE)
        eligible = np.array([k in activations for k in kinds]) & np.isfinite(frac)
        hit = np.flatnonzero(eligible & (frac > getattr(th, warn)))
        if hit.size:
            severe = bool((frac[hit] > getattr(th, error)).any())
            finding = _finding(rec, kind, hit, frac, rows, severe, kinds)
            if kind == "saturation":
                finding = _after_jump(rec, th, finding, hit, getattr(th, warn)) or finding
            findings.append(finding)
    return findings


def _after_jump(rec: Record, th: Thresholds, finding: Finding, cols, warn: float):
    """The saturation finding retold when the units were healthy at the first measured
    step and saturated after an oversized early update (update_ratio >= update_large, then
    a stall: `find_stall`); None when that is not what happened."""
    from gradprobe.diagnose.rules.update import find_stall  # update imports this module

    measured = measured_rows(rec["saturated_frac"], healthy_rows(rec))
    if measured.size == 0:
        return None
    first = np.nan_to_num(rec["saturated_frac"][measured[0], cols], nan=0.0)
    stall = None if (first > warn).any() else find_stall(rec, th)
    if stall is None or stall.jump_step is None:
        return None
    cause = (
        f"the update at step {stall.jump_step} rewrote {stall.jump_ratio:.0%} of "
        f"{stall.jump_layer}'s weights (||dW||/||W|| = {stall.jump_ratio:.2g}) and pushed the "
        f"units into their flat tails; at the first measured step {first.max():.0%} were "
        "saturated, so the initialisation is not the cause"
    )
    fix = (
        "lower the learning rate (or warm it up) so no step rewrites a large share of the "
        "weights; use cross-entropy on the logits instead of a quadratic cost on a sigmoid/"
        "softmax, or ReLU with He init"
    )
    evidence = {**finding.evidence, "jump_step": stall.jump_step, "jump_ratio": stall.jump_ratio}
    return dataclasses.replace(finding, evidence=evidence, cause=cause, fix=fix)


def _finding(rec, kind, cols, frac, rows, severe, kinds) -> Finding:
    names = [rec.layers[c] for c in cols]
    fracs = {rec.layers[c]: float(frac[c]) for c in cols}
    worst = max(fracs.values())
    evidence = {"fraction": fracs, "activation": sorted({str(kinds[c]) for c in cols})}
    steps = [int(s) for s in rec.steps[rows]]
    severity = "error" if severe else "warning"
    if kind == "saturation":
        summary = f"up to {worst:.0%} of the units saturated (|a| within 3% of an asymptote)"
        cause = (
            "pre-activations too large for a sigmoid/tanh: the weights or inputs are too "
            "large, so the derivative is ~0 for most units"
        )
        fix = (
            "normalise the inputs, init the weights with sigma_w^2 = 1 (Glorot/LeCun), add "
            "LayerNorm/BatchNorm before the activation, or use ReLU with He init"
        )
    elif steps and steps[0] == int(rec.steps[0]):
        summary = f"up to {worst:.0%} of the ReLU units never active on the batch"
        cause = (
            "units below zero for every input from the first recorded step: a negative "
            "bias, inputs that are not standardised, or a too-large step before it"
        )
        fix = "init the biases at 0, standardise the inputs, and use LeakyReLU (slope 0.01)"
    else:
        summary = f"up to {worst:.0%} of the ReLU units never active on the batch"
        cause = "units pushed below zero for every input during training by too-large steps"
        fix = "lower the learning rate by 10x, and use LeakyReLU (slope 0.01) with He init"
    return Finding(kind, names, steps, severity, evidence, cause, fix, summary=summary)
