"""Update-ratio rules: ||dW|| / ||W|| per step far above or below CS231n's ~1e-3.

A ratio is "sustained" when it is the median over at least update_min_points detail
steps of a layer (before any non-finite step). Too large is per layer. Too small is
about the learning rate, so it needs every layer below the threshold, the best-fed one
included: slow layers under a vanishing gradient are that finding's business.

Tiny updates are not always a small learning rate. When the first steps' update ratio
was at update_large or above and every update after it is tiny, the first step was too
large: it threw the units into their flat tails (or killed them) and the gradient through
them is ~0 since (`find_stall`). That run gets an update_too_large finding (error) on those
first steps instead of update_too_small; saturated (dead) units at or above the best-fed
layer, with no such step, make update_too_small name them instead of the learning rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gradprobe.diagnose.finding import Finding
from gradprobe.diagnose.rules.cause import CLIP_FIX
from gradprobe.diagnose.rules.common import activation_kind, fmt, healthy_rows, nanmedian
from gradprobe.diagnose.rules.units import RULES as UNIT_RULES
from gradprobe.diagnose.thresholds import Thresholds
from gradprobe.record.record import Record

# Karpathy, CS231n "Neural Networks Part 3": an update ratio "somewhere around 1e-3".
HEALTHY = 1e-3

# The stalled units per unit rule kind ("": none measured): adjective, noun, fix.
_UNITS = {
    "saturation": ("saturated", "units in their flat tails", "keep the units out of their flat "
                   "tails: cross-entropy on the logits (F.cross_entropy, nn.BCEWithLogitsLoss) "
                   "instead of a quadratic cost on a sigmoid/softmax output, ReLU with He init, "
                   "or LayerNorm/BatchNorm before the activation"),
    "dead_units": ("dead", "ReLU units never active", "keep the units alive: LeakyReLU (slope "
                   "0.01) with He init, biases at 0"),
    "": ("", "", "keep the units out of their flat tails and alive: cross-entropy on the logits, "
         "ReLU (or LeakyReLU) with He init, normalisation before the activation"),
}  # fmt: skip


@dataclass(frozen=True)
class Stall:
    """Why every update is tiny when the learning rate is not to blame.

    Attributes:
        jump_step: the step of the largest update ratio >= update_large among the first
            `window` measured steps, after which every update is tiny; None when none.
        jump_layer: the layer of that update; jump_ratio: its ratio ||dW|| / ||W||.
        jump_layers: the layers at update_large or above on those first steps.
        jump_steps: those first steps.
        after_ratio: the best-fed layer's median update ratio after the jump (all steps
            when there is none).
        units: "saturation", "dead_units" or "" (no unit fraction above its threshold).
        unit_layers: {layer: fraction} of the saturated (or dead) layers after the jump.
        grad_drop: global gradient norm after the jump over that at it; NaN if unknown.
    """

    jump_step: int | None
    jump_layer: str
    jump_ratio: float
    jump_layers: tuple[str, ...]
    jump_steps: tuple[int, ...]
    after_ratio: float
    units: str
    unit_layers: dict
    grad_drop: float

    def __repr__(self) -> str:
        jump = "no jump" if self.jump_step is None else f"jump {fmt(self.jump_ratio)}"
        where = (
            f" at step {self.jump_step} ({self.jump_layer})" if self.jump_step is not None else ""
        )
        return f"Stall({jump}{where}, after {fmt(self.after_ratio)}, units={self.unit_layers})"

    def evidence(self) -> dict:
        """The numbers behind the stall, for a Finding's evidence."""
        out: dict = {"update_ratio_after": self.after_ratio}
        if self.jump_step is not None:
            out["first_update"] = {
                "step": self.jump_step,
                "layer": self.jump_layer,
                "update_ratio": self.jump_ratio,
            }
            out["grad_norm_drop"] = self.grad_drop
        if self.units:
            out["saturated_frac" if self.units == "saturation" else "dead_frac"] = self.unit_layers
        return out

    def _units_text(self) -> str:
        """e.g. "100% of fc3's units in their flat tails"; "" when no unit rule fired."""
        if not self.units:
            return ""
        layer = max(self.unit_layers, key=self.unit_layers.get)
        return f"{self.unit_layers[layer]:.0%} of {layer}'s {_UNITS[self.units][1]}"

    def explain(self) -> tuple[str, str]:
        """Cause and fix in words; neither advises raising the learning rate."""
        adjective, _, fix = _UNITS[self.units]
        tiny = f"moves {fmt(self.after_ratio)} of the weights (median, best-fed layer)"
        if self.jump_step is None:
            cause = (
                f"{adjective} units, not too small a learning rate: {self._units_text()}, so "
                f"the gradient through them and to every layer below is ~0 and every update {tiny}"
            )
            return cause, f"{fix}; raising the learning rate does not bring the units back"
        died = {"saturated": "saturated", "dead": "died"}.get(adjective)
        units = f"the units {died} ({self._units_text()})" if died else "the gradient collapsed"
        drop = self.grad_drop
        fell = f" (the gradient norm fell {fmt(1 / drop)}x)" if 0 < drop < 1 else ""
        cause = (
            f"too large a first step, not too small a learning rate: the update at step "
            f"{self.jump_step} rewrote {self.jump_ratio:.0%} of {self.jump_layer}'s weights "
            f"(||dW||/||W|| = {fmt(self.jump_ratio)}), {units}, and the gradient through them "
            f"is ~0{fell}: every update since {tiny}"
        )
        fix = (
            f"lower the learning rate (by up to {fmt(self.jump_ratio / HEALTHY)}x: a first update "
            f"ratio of ~1e-3 is healthy) or warm it up, rather than raise it; and {fix}"
        )
        return cause, fix


def find_stall(rec: Record, th: Thresholds) -> Stall | None:
    """The stall of a run whose updates are all tiny, when the learning rate is not why.

    Either an update ratio >= update_large among the first `window` measured steps with
    every layer's median after it below update_small (the first step saturated or killed
    the units), or units saturated (dead) at or above the best-fed layer, so that no layer
    gets a gradient through them. None otherwise, and when update_ratio was not recorded.
    """
    if "update_ratio" not in rec:
        return None
    limit = healthy_rows(rec)
    with np.errstate(all="ignore"):
        ratio = np.asarray(rec["update_ratio"][:limit], dtype=np.float64)
        ratio = np.where(np.isfinite(ratio), ratio, np.nan)
    rows = np.flatnonzero(np.isfinite(ratio).any(axis=1))
    early = rows[: th.window]
    big = early[(np.nan_to_num(ratio[early], nan=0.0) >= th.update_large).any(axis=1)]
    start = int(big[-1]) + 1 if big.size else 0
    after = rows[rows >= start]
    if after.size == 0:
        return None
    after_median = np.nan_to_num(nanmedian(ratio[after], axis=0), nan=-1.0)
    best = int(np.argmax(after_median))
    if not 0 <= after_median[best] < th.update_small:
        return None
    units, unit_layers, top = _stalled_units(rec, th, start, limit)
    if big.size == 0 and (top is None or best > top):
        return None
    jump = _jump(rec, ratio, big, th.update_large)
    drop = _grad_drop(rec, big, start, limit)
    return Stall(*jump, float(after_median[best]), units, unit_layers, drop)


def _jump(rec: Record, ratio: np.ndarray, big: np.ndarray, large: float) -> tuple:
    """(step, layer, ratio, layers, steps) of the largest early update; None/empty if none."""
    if big.size == 0:
        return None, "", float("nan"), (), ()
    values = np.nan_to_num(ratio[big], nan=0.0)
    row, col = np.unravel_index(int(np.argmax(values)), values.shape)
    cols = np.flatnonzero((values >= large).any(axis=0))
    return (
        int(rec.steps[big[row]]),
        rec.layers[col],
        float(values[row, col]),
        tuple(rec.layers[c] for c in cols),
        tuple(int(s) for s in rec.steps[big]),
    )


def _stalled_units(rec: Record, th: Thresholds, start: int, limit: int):
    """(unit rule kind, {layer: fraction}, highest column) of the layers whose median
    saturated (dead) fraction over rows start..limit-1 is above the unit rule's warning
    threshold; ("", {}, None) when none is."""
    kinds = [activation_kind(info) for info in rec.layer_info]
    for kind, quantity, activations, warn, _ in UNIT_RULES:
        if quantity not in rec:
            continue
        frac = nanmedian(rec[quantity][start:limit], axis=0)
        eligible = np.array([k in activations for k in kinds]) & np.isfinite(frac)
        hit = np.flatnonzero(eligible & (np.nan_to_num(frac) > getattr(th, warn)))
        if hit.size:
            return kind, {rec.layers[c]: float(frac[c]) for c in hit}, int(hit.max())
    return "", {}, None


def _grad_drop(rec: Record, big: np.ndarray, start: int, limit: int) -> float:
    """Median global gradient norm after the jump over its median on the jump's rows."""
    if big.size == 0 or "grad_norm" not in rec:
        return float("nan")
    grad = np.asarray(rec["grad_norm"][:limit], dtype=np.float64)
    with np.errstate(all="ignore"):
        total = np.where(np.isfinite(grad).any(axis=1), np.sqrt(np.nansum(grad**2, axis=1)), np.nan)
    at, after = float(nanmedian(total[big])), float(nanmedian(total[start:]))
    return after / at if at > 0 and np.isfinite(after) else float("nan")


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
    """update_too_large (per layer, or on the first steps when every later update is tiny)
    and update_too_small (model-wide) findings."""
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
        stall = find_stall(rec, th)
        if stall is None:
            findings.append(_finding(rec, "update_too_small", small, median, steps))
        elif stall.jump_step is not None:
            findings.append(_first_steps_finding(stall))
        else:
            findings.append(_stalled_finding(rec, small, median, steps, stall))
    return findings


def _evidence(rec: Record, cols: np.ndarray, median) -> dict:
    evidence = {"update_ratio": {rec.layers[c]: float(median[c]) for c in cols}}
    evidence["model_median"] = float(nanmedian(median))
    return evidence


def _finding(rec: Record, kind: str, cols: np.ndarray, median, steps) -> Finding:
    names = [rec.layers[c] for c in cols]
    evidence = _evidence(rec, cols, median)
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


def _first_steps_finding(stall: Stall) -> Finding:
    """update_too_large on the first steps whose update collapsed the later ones: learning
    has stopped (error), and the tiny ratios after it are its consequence."""
    summary = (
        f"update ratio {fmt(stall.jump_ratio)} at step {stall.jump_step} ({stall.jump_layer}), "
        f"then a median of {fmt(stall.after_ratio)} per step (healthy ~1e-3)"
    )
    cause, fix = stall.explain()
    return Finding(
        "update_too_large",
        stall.jump_layers,
        stall.jump_steps,
        "error",
        stall.evidence(),
        cause,
        fix,
        summary=summary,
    )


def _stalled_finding(rec: Record, cols, median, steps, stall: Stall) -> Finding:
    """update_too_small whose cause is the saturated (or dead) units, not the learning rate."""
    names = [rec.layers[c] for c in cols]
    evidence = {**_evidence(rec, cols, median), **stall.evidence()}
    summary = f"median update ratio {fmt(float(median[cols].min()))} per step (healthy ~1e-3)"
    cause, fix = stall.explain()
    return Finding(
        "update_too_small", names, steps, "warning", evidence, cause, fix, summary=summary
    )
