"""Vanishing and exploding gradients along time, in recurrent layers (axis "time").

Reads the series delta_norm_t of shape (n_steps, n_layers, T): ||dC/dh_t|| over the batch
and features, t = 0..T-1 in forward time, NaN for non-recurrent layers. The gain of a
time link is norm[t] / norm[t+1] (below 1: the gradient shrinks going back in time); as
along depth, its median over a window of recorded steps, and the stretch of time steps
whose product of gains is furthest from 1.
"""

from __future__ import annotations

import numpy as np

from gradprobe.diagnose.finding import Finding
from gradprobe.diagnose.rules.cause import CLIP_FIX
from gradprobe.diagnose.rules.common import fmt, healthy_rows, measured_rows, windows
from gradprobe.diagnose.rules.depth import passes
from gradprobe.diagnose.rules.gains import link_log_gains, log_norms, worst_stretch
from gradprobe.diagnose.thresholds import Thresholds
from gradprobe.record.record import Record

SERIES = "delta_norm_t"
DIRECTIONS = (
    ("vanishing_gradient", -1, "time_vanish_ratio", "time_vanish_ratio_error"),
    ("exploding_gradient", +1, "time_explode_ratio", "time_explode_ratio_error"),
)
_GATED = ("LSTM", "LSTMCell", "GRU", "GRUCell")


def time_rule(rec: Record, th: Thresholds) -> list[Finding]:
    """Findings with axis "time" for every recurrent layer of the record."""
    if SERIES not in rec.series:
        return []
    limit = healthy_rows(rec)
    series = rec.series[SERIES][:limit]
    findings = []
    for col in range(series.shape[1]):
        logs = log_norms(series[:, col, :])
        if logs.shape[1] < 2 or not np.isfinite(logs).any():
            continue
        for direction in DIRECTIONS:
            found = _first_window(rec, col, logs, direction, th, limit)
            if found is not None:
                findings.append(found)
    return findings


def _first_window(rec, col, logs, direction, th: Thresholds, limit) -> Finding | None:
    rows = measured_rows(logs, limit)
    for window, wrows in windows(rows, th.window):
        found = _finding(rec, col, logs, wrows, direction, th, window)
        if found is not None:
            return found
    return None


def _finding(rec, col, logs, rows, direction, th, window) -> Finding | None:
    kind, sign, warn, error = direction
    stretch = worst_stretch(link_log_gains(logs[rows]), sign)
    if stretch is None or stretch.n_links < th.min_time_steps:
        return None
    severity = passes(stretch.total, sign, getattr(th, warn), getattr(th, error))
    if severity is None:
        return None
    info = rec.layer_info[col]
    evidence = {
        "time_range": f"t={stretch.start}..t={stretch.stop}",
        "sequence_length": int(logs.shape[1]),
        "gain_per_time_step": stretch.per_link,
        "total_ratio": stretch.total,
        "n_time_steps": stretch.n_links,
        "window": window,
        "layer_type": info.get("type"),
    }
    summary = (
        f"x{fmt(stretch.per_link)} per time step, {fmt(stretch.total)} at t={stretch.start} "
        f"over {stretch.n_links} time steps"
    )
    cause, fix = _explain(sign, stretch.per_link, str(info.get("type") or ""))
    steps = [int(s) for s in rec.steps[rows]]
    return Finding(kind, [rec.layers[col]], steps, severity, evidence, cause, fix, "time", summary)


def _explain(sign: int, gain: float, layer_type: str) -> tuple[str, str]:
    # Pascanu, Mikolov, Bengio 2013: the gradient through time is a product of recurrent
    # Jacobians; a largest singular value of W_hh below 1/gamma (gamma = 1 for tanh,
    # 1/4 for sigmoid) makes it vanish, above it is needed for it to explode.
    if sign < 0:
        cause = (
            f"the recurrent Jacobian shrinks the gradient x{fmt(gain)} per time step "
            "(largest singular value of W_hh times the activation slope below 1)"
        )
        if layer_type in _GATED:
            fix = (
                "initialise the forget-gate bias to 1 (Jozefowicz et al. 2015) and W_hh "
                "orthogonal (nn.init.orthogonal_), or truncate backpropagation through time"
            )
        else:
            fix = (
                "use an LSTM or GRU, or initialise W_hh orthogonal (nn.init.orthogonal_); "
                "truncate backpropagation through time"
            )
        return cause, fix
    cause = (
        f"the recurrent Jacobian grows the gradient x{fmt(gain)} per time step "
        "(largest singular value of W_hh above 1 / activation slope)"
    )
    fix = f"{CLIP_FIX} (Pascanu et al. 2013), and scale W_hh by x{fmt(1 / gain)}"
    fix += " or init it orthogonal"
    return cause, fix
