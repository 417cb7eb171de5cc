"""Non-finite values: the first step and layer of a NaN/Inf, forward or backward, and why.

Where and when come from `Record.first_nonfinite()`. The likely cause is read from the
steps before it: a loss or gradient norm that grew by an order of magnitude first means
the optimizer overshot (learning rate too large); a NaN out of a steady run is a single
operation that overflowed or took the log of 0 (forward), or a derivative that is
infinite where it was evaluated (backward). A backward NaN after a finite forward whose
activations fell to ~0 (below tiny_activation), or after an oversized update, is first an
exp that overflowed: a hand-written 1/(1+exp(-z)) gives exactly 0 and the backward 0 x inf.
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
    overflow = _exp_overflow(rec, before, th) if bad["where"] == "backward" else {}
    evidence.update(overflow)
    cause, fix = _explain(bad["where"], grew, loss_growth, grad_growth)
    if overflow and not grew:
        cause, fix = _overflow_text(overflow, cause, fix)
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


def _smallest(x: np.ndarray, rec: Record, low: bool) -> dict:
    """{"value", "layer", "step"} of the smallest (low) or largest finite entry of x."""
    x = np.where(np.isfinite(x), x, np.inf if low else -np.inf)
    row, col = np.unravel_index(int(np.argmin(x) if low else np.argmax(x)), x.shape)
    return {"value": float(x[row, col]), "layer": rec.layers[col], "step": int(rec.steps[row])}


def _exp_overflow(rec: Record, before: int, th: Thresholds) -> dict:
    """Signs of an exp overflow up to the NaN step (row `before`, its forward finite): the
    smallest |activation| below tiny_activation, an update ratio >= update_large before it."""
    out = {}
    if "abs_min_nonzero" in rec and np.isfinite(amin := rec["abs_min_nonzero"][: before + 1]).any():
        low = _smallest(amin, rec, low=True)
        if low["value"] < th.tiny_activation:
            out["smallest_activation"] = low
    if "update_ratio" in rec and np.isfinite(ratio := rec["update_ratio"][:before]).any():
        high = _smallest(ratio, rec, low=False)
        if high["value"] >= th.update_large:
            out["largest_update_ratio"] = high
    return out


def _overflow_text(overflow: dict, cause: str, fix: str) -> tuple[str, str]:
    """The exp overflow first among the causes of a backward NaN, then the others."""
    seen, lower = [], ""
    if high := overflow.get("largest_update_ratio"):
        seen.append(f"the update at step {high['step']} rewrote {high['value']:.0%} of "
                    f"{high['layer']}'s weights")  # fmt: skip
        lower = ", and lower the learning rate"
    if low := overflow.get("smallest_activation"):
        seen.append(f"the activations reached {low['value']:.1e} at {low['layer']} (step "
                    f"{low['step']}), deep in an exponential tail")  # fmt: skip
    return (
        "an overflow in exp (e.g. a hand-written sigmoid 1/(1+exp(-z)) or softmax): "
        f"{', then '.join(seen)}; exp(-z) = inf once z < -88.72 in float32 (-709.78 in "
        "float64), the unit's output is then exactly 0 and the backward forms 0 x inf. "
        "Otherwise: " + cause,
        "use torch.sigmoid / F.log_softmax / a logits-based loss (F.cross_entropy, "
        f"F.binary_cross_entropy_with_logits) instead of exp written out{lower}; otherwise " + fix,
    )
