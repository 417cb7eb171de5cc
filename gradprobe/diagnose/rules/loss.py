"""Loss rules: divergence (the loss climbs well above where it was) and plateau (no progress
while the loss is still far from where it started to go).

Both read medians over windows of consecutive logged losses, so one noisy batch does not
make or break a finding.
"""

from __future__ import annotations

import math

import numpy as np

from gradprobe.diagnose.finding import Finding
from gradprobe.diagnose.rules.cause import CLIP_FIX
from gradprobe.diagnose.rules.common import fmt, healthy_rows, nanmedian
from gradprobe.diagnose.rules.update import find_stall
from gradprobe.diagnose.thresholds import Thresholds
from gradprobe.record.record import Record


def logged_loss(rec: Record) -> tuple[np.ndarray, np.ndarray]:
    """The finite logged losses before any non-finite step, and their steps."""
    limit = healthy_rows(rec)
    loss, steps = rec.loss[:limit], rec.steps[:limit]
    keep = np.isfinite(loss)
    return loss[keep], steps[keep]


def rolling_median(x: np.ndarray, size: int) -> np.ndarray:
    """Median of each run of `size` consecutive values: shape (len(x) - size + 1,)."""
    windows = np.lib.stride_tricks.sliding_window_view(x, size)
    return np.median(windows, axis=1)


def divergence_rule(rec: Record, th: Thresholds) -> list[Finding]:
    """loss_divergence: the windowed loss reaches diverge_factor x the starting loss, or
    climbs that far above its lowest point giving back at least half the progress, and
    is still up (or above the starting loss) at the end of the record."""
    loss, steps = logged_loss(rec)
    size = min(th.window, len(loss) - th.loss_start_points)
    if size < 1:
        return []
    start = float(np.median(loss[: th.loss_start_points]))
    smooth = rolling_median(loss[1:], size)  # from the second loss: the first sets `start`
    trough = np.minimum(np.minimum.accumulate(smooth), start)
    over_start = smooth >= th.diverge_factor * start
    lost = (smooth >= th.diverge_factor * trough) & (smooth - trough >= 0.5 * (start - trough))
    bad = np.flatnonzero(over_start | lost)
    # A spike the run recovers from is not divergence (a ReLU net at lr 0.1 on digits
    # spikes from 0.74 to 1.6 and ends at 0.05): the last window must still be up, or
    # worse than the start (or the run ended in NaN/Inf, cut off just before by
    # healthy_rows).
    still_up = over_start[-1] or lost[-1] or smooth[-1] > start
    if bad.size == 0 or start <= 0 or not still_up:
        return []
    i = int(bad[0])
    peak, low = float(smooth[i:].max()), float(trough[i])
    evidence = {"start_loss": start, "lowest_loss": low, "peak_loss": peak}
    evidence["rise_over_lowest"] = peak / low if low > 0 else math.inf
    span = [int(s) for s in steps[1 + i : 1 + i + size]]
    summary = f"loss {fmt(start)} at the start, lowest {fmt(low)}, then up to {fmt(peak)}"
    cause = "too large a learning rate: the steps overshoot and the loss climbs"
    fix = f"lower the learning rate by 10x (or add warmup), and {CLIP_FIX}"
    return [Finding("loss_divergence", [], span, "error", evidence, cause, fix, summary=summary)]


def plateau_rule(rec: Record, th: Thresholds) -> list[Finding]:
    """loss_plateau: the loss changed by less than plateau_rel from the third to the last
    quarter of the logged losses, while it is still above plateau_floor x the starting
    loss (far from where training takes it) and below diverge_factor x it (not diverged)."""
    loss, steps = logged_loss(rec)
    n = len(loss) // 4
    if n < th.plateau_min_points:
        return []
    start = float(np.median(loss[: th.loss_start_points]))
    third, late = float(np.median(loss[-2 * n : -n])), float(np.median(loss[-n:]))
    change = (third - late) / abs(third) if third else math.inf
    far = th.plateau_floor * start < late < th.diverge_factor * start
    if abs(change) >= th.plateau_rel or not far:
        return []
    best = best_update_ratio(rec)
    evidence = {"start_loss": start, "third_quarter_loss": third, "late_loss": late}
    evidence.update(relative_change=change, best_update_ratio=best)
    summary = (
        f"loss {fmt(late)} ({fmt(start)} at the start), {-change:+.1%} over the last "
        f"{len(loss) - 3 * n} logged steps"
    )
    cause, fix, why = _plateau_cause(rec, best, th)
    evidence.update(why)
    span = [int(s) for s in steps[-2 * n :]]
    return [Finding("loss_plateau", [], span, "warning", evidence, cause, fix, summary=summary)]


def _plateau_cause(rec: Record, best: float, th: Thresholds) -> tuple[str, str, dict]:
    """Cause, fix and the stall's evidence (empty unless the steps stalled)."""
    # tiny steps after an oversized first one, or under saturated units, are no call for a
    # larger learning rate (update.find_stall)
    stall = find_stall(rec, th) if best < th.plateau_update else None
    if stall is not None:
        return (*stall.explain(), stall.evidence())
    if best < th.plateau_update:
        return (
            f"too small a learning rate: even the best-fed layer moves by {fmt(best)} of its "
            "norm per step (CS231n: ~1e-3 is healthy)",
            f"raise the learning rate by {fmt(1e-3 / best) if best > 0 else '10'}x",
            {},
        )
    return (
        "the gradient does not move the loss although the steps are not small: it does "
        "not reach the layers (vanishing), the units are saturated or dead, or the model "
        "is stuck at predicting the class frequencies",
        "see the other findings; if there are none, try Adam (lr 1e-3) and check the labels",
        {},
    )


def best_update_ratio(rec: Record) -> float:
    """The largest per-layer median update ratio; +inf when none was recorded."""
    if "update_ratio" not in rec:
        return math.inf
    per_layer = nanmedian(rec["update_ratio"][: healthy_rows(rec)], axis=0)
    return float(np.nanmax(per_layer)) if np.isfinite(per_layer).any() else math.inf
