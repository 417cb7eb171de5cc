"""Vanishing and exploding gradients along depth, from the per-layer gain of delta_norm.

Each layer's delta_norm is first made a per-unit RMS, ||delta^l|| / sqrt(N_l) with N_l
its output features (layer_info weight_shapes), because the norm of a vector of N
comparable entries grows as sqrt(N): without it a 512 -> 64 bottleneck would look like a
vanishing gradient. The gain of a link is r_l / r_{l+1} between consecutive measured
layers (layers whose delta_norm is NaN throughout are skipped and named), its median
over a window of recorded steps (robust to single noisy steps), and the rule names the
stretch of layers whose product of gains is furthest from 1.
"""

from __future__ import annotations

import math

import numpy as np

from gradprobe.diagnose.finding import Finding
from gradprobe.diagnose.rules.cause import attribute
from gradprobe.diagnose.rules.common import (
    feature_count,
    feeds_batchnorm,
    fmt,
    healthy_rows,
    layer_range,
    measured_rows,
    windows,
)
from gradprobe.diagnose.rules.gains import link_log_gains, log_norms, worst_stretch
from gradprobe.diagnose.thresholds import Thresholds
from gradprobe.record.record import Record

# kind, direction of the log-gain, and the threshold names for warning and error.
DIRECTIONS = (
    ("vanishing_gradient", -1, "vanish_ratio", "vanish_ratio_error"),
    ("exploding_gradient", +1, "explode_ratio", "explode_ratio_error"),
)


def unit_log_delta(rec: Record, limit: int) -> tuple[np.ndarray, list[int], list[str]]:
    """ln of per-unit delta, its measured columns, and the names of the skipped layers:
    those never measured and those feeding a BatchNorm (see `feeds_batchnorm`).

    Returns:
        array of shape (n_steps, n_measured), the record columns kept, the skipped names.
    """
    delta = rec["delta_norm"][:limit]
    infos = rec.layer_info
    n = np.array([feature_count(info) or 1 for info in infos], dtype=np.float64)
    kept = [
        c
        for c in range(delta.shape[1])
        if np.isfinite(delta[:, c]).any() and not feeds_batchnorm(infos, c)
    ]
    skipped = [rec.layers[c] for c in range(delta.shape[1]) if c not in kept]
    return log_norms(delta[:, kept] / np.sqrt(n[kept])), kept, skipped


def passes(ratio: float, sign: int, warn: float, error: float) -> str | None:
    """The severity a total ratio earns, or None below the warning threshold."""
    if sign < 0:
        return "error" if ratio < error else "warning" if ratio < warn else None
    return "error" if ratio > error else "warning" if ratio > warn else None


def depth_rule(rec: Record, th: Thresholds) -> list[Finding]:
    """vanishing_gradient / exploding_gradient findings (axis "depth")."""
    if "delta_norm" not in rec:
        return []
    limit = healthy_rows(rec)
    logs, kept, skipped = unit_log_delta(rec, limit)
    if len(kept) < 2:
        return []
    rows = measured_rows(logs, limit)
    findings = []
    for kind, sign, warn, error in DIRECTIONS:
        for window, wrows in windows(rows, th.window):
            extra = {"window": window, "skipped_layers": skipped}
            found = _finding(rec, logs, kept, wrows, limit, (kind, sign, warn, error), th, extra)
            if found is not None:
                findings.append(found)
                break
    return findings


def _finding(rec, logs, kept, rows, limit, direction, th, extra) -> Finding | None:
    kind, sign, warn, error = direction
    gains = link_log_gains(logs[rows])
    stretch = worst_stretch(gains, sign)
    if stretch is None or stretch.n_links < th.min_layers:
        return None
    severity = passes(stretch.total, sign, getattr(th, warn), getattr(th, error))
    if severity is None:
        return None
    cols = kept[stretch.start : stretch.stop + 1]
    names = [rec.layers[c] for c in cols]
    why = attribute(rec, cols, stretch.log_gains, rows, limit, sign, th.driver_share)
    evidence = {
        "layer_range": layer_range(names),
        "gain_per_layer": stretch.per_link,
        "total_ratio": stretch.total,
        "n_layers": stretch.n_links,
        "link_gains": {f"{a}->{b}": math.exp(g) for a, b, g in _links(names, stretch)},
        "normalised_by": "sqrt(output features)",
        **why.evidence,
        **extra,
    }
    summary = (
        f"x{fmt(stretch.per_link)} per layer, {fmt(stretch.total)} at {names[0]} "
        f"over {stretch.n_links} layers"
    )
    steps = [int(s) for s in rec.steps[rows]]
    return Finding(kind, names, steps, severity, evidence, why.cause, why.fix, "depth", summary)


def _links(names: list[str], stretch):
    # link k runs from the upper layer names[k+1] down to names[k]
    return [(names[k + 1], names[k], g) for k, g in enumerate(stretch.log_gains)]
