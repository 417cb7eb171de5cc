"""Cause attribution: split each layer's measured gain into a weight and an activation factor.

The plug-in version of chi (THEORY.md, mean field). With z^{l+1} = W^{l+1} phi(z^l) + b,
delta^l = phi'(z^l) * (W^{l+1})^T delta^{l+1}; for W of shape (N_{l+1}, N_l),
E||W^T d||^2 = ||d||^2 ||W||_F^2 / N_{l+1}. In per-unit RMS terms (r_l = ||delta^l|| /
sqrt(N_l)) the measured gain r_l / r_{l+1} is therefore

    sqrt(chi) = sigma_w * RMS(phi'),  sigma_w = ||W^{l+1}||_F / sqrt(N_{l+1})

(sigma_w^2 = fan_in Var(W), THEORY.md's notation). The weight factor is sigma_w from the
recorded weight_norm; the activation factor is the rest, gain / sigma_w, an RMS phi'.
Each is compared with the reference init for the activation -- sigma_w = sqrt(2) for
ReLU (He: chi = 1 exactly), 1 otherwise (Glorot/LeCun) -- so that a ReLU net with He init
has both factors at 1 and a sigmoid net's slope of 1/4 counts against the activation.
A link whose upper layer is a normalisation layer (BatchNorm, LayerNorm) is the backward
through that layer: its whole gain is the normalisation factor.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from gradprobe.diagnose.rules.common import activation_kind, fmt, is_norm, window_median
from gradprobe.record.record import Record

# He et al. 2015: sigma_w^2 = 2 makes chi = 1 for ReLU; Glorot/LeCun sigma_w^2 = 1 keeps a
# unit-slope activation (tanh near 0, linear) at chi = 1.
REFERENCE_SIGMA_W = {"relu": math.sqrt(2.0)}
# A quarter of the units in the flat tails (tanh' <= 0.06 there, gradprobe/stats/
# activation.py) takes a quarter off E[phi'^2]: saturation is then a named part of the
# cause; below it a tanh net loses slope by its pre-activation variance (THEORY.md).
MOSTLY_SATURATED = 0.25
# Layer types computing z = W a (+ b) with W's rows the output units (Conv: out channels
# first); for others (recurrent, attention, embeddings) the weight factor is unknown.
_MATRIX_TYPES = re.compile(r"^(Lazy)?(Linear|Conv[123]d)$")
FACTORS = ("activation", "weight", "normalisation", "unknown")
# Clipping at 1.0: the common default (e.g. Hugging Face Trainer max_grad_norm=1.0);
# Pascanu et al. 2013 clip at a norm of the order of the typical healthy gradient.
CLIP_AT = 1.0
CLIP_FIX = f"clip gradients at {CLIP_AT} (torch.nn.utils.clip_grad_norm_(params, {CLIP_AT}))"


@dataclass(frozen=True)
class Attribution:
    """How a stretch's gain splits: summed log-factors, the driver, cause and fix."""

    log_factors: dict
    driver: str
    evidence: dict
    cause: str
    fix: str

    def __repr__(self) -> str:
        return f"Attribution(driver={self.driver!r}, {self.evidence.get('factor_per_layer')})"


def _sigma_w(rec: Record, col: int, rows: np.ndarray, limit: int) -> float:
    """||W||_F / sqrt(N_out) of a layer with a matrix (or conv) weight; NaN if unknown."""
    info = rec.layer_info[col]
    shapes = info.get("weight_shapes") or []
    # the formula needs z = W a: one matrix (or conv kernel) whose rows are output units
    matrix = len(shapes) == 1 and len(shapes[0]) >= 2
    if "weight_norm" not in rec or not matrix or not _MATRIX_TYPES.match(info.get("type") or ""):
        return math.nan
    n_out = int(shapes[0][0])  # W^{l+1} is (N_{l+1}, fan_in): its rows are output units
    norm = float(window_median(rec["weight_norm"][:, col], rows, limit))
    return norm / math.sqrt(n_out) if n_out and math.isfinite(norm) and norm > 0 else math.nan


def split_links(rec: Record, cols: list[int], log_gains, rows, limit) -> dict[str, float]:
    """Summed log-factors over the links cols[k] -> cols[k+1], keyed by FACTORS; a factor
    no link had is absent."""
    out: dict[str, float] = {}
    infos = rec.layer_info
    for lo, hi, lg in zip(cols[:-1], cols[1:], log_gains):
        if is_norm(infos[hi]):
            parts = {"normalisation": lg}
        elif math.isfinite(sigma_w := _sigma_w(rec, hi, rows, limit)):
            ref = REFERENCE_SIGMA_W.get(activation_kind(infos[lo]), 1.0)
            weight = math.log(sigma_w / ref)
            parts = {"weight": weight, "activation": lg - weight}
        else:
            parts = {"unknown": lg}
        for key, value in parts.items():
            out[key] = out.get(key, 0.0) + value
    return out


def _driver(log_factors: dict[str, float], sign: int) -> str:
    return max(log_factors, key=lambda k: sign * log_factors[k])


def _units(rec: Record, cols: list[int], rows, limit, quantity: str) -> float:
    """Mean over the stretch's lower layers of the window median of a unit fraction."""
    if quantity not in rec:
        return math.nan
    values = [float(window_median(rec[quantity][:, c], rows, limit)) for c in cols[:-1]]
    values = [v for v in values if math.isfinite(v)]
    return sum(values) / len(values) if values else math.nan


def attribute(rec: Record, cols, log_gains, rows, limit, sign: int, share: float) -> Attribution:
    """Which factor drives a stretch's vanishing (sign=-1) or exploding (sign=+1).

    Args:
        rec: the record.
        cols: record column indices of the stretch's layers, forward order.
        log_gains: ln gain of each link cols[k] -> cols[k+1], length len(cols) - 1.
        rows: the window's rows; limit: rows at or after it are not read.
        sign: -1 vanishing, +1 exploding.
        share: the driver's least share of the total log-gain to be named alone.
    """
    log_factors = split_links(rec, list(cols), log_gains, rows, limit)
    n_links = len(cols) - 1
    driver = _driver(log_factors, sign)
    activations = sorted({activation_kind(rec.layer_info[c]) for c in cols[:-1]}, key=str)
    evidence = {
        "factor_per_layer": {k: math.exp(v / n_links) for k, v in log_factors.items()},
        "driver": driver,
        "activations": activations,
    }
    for quantity in ("saturated_frac", "dead_frac"):
        evidence[quantity] = _units(rec, cols, rows, limit, quantity)
    cause, fix = explain(driver, sign, evidence, log_factors, n_links)
    evidence = {k: v for k, v in evidence.items() if not _is_nan(v)}
    total = sum(log_factors.values())
    evidence["driver_share"] = log_factors[driver] / total if total else 1.0
    others = [k for k in log_factors if k != driver]
    if evidence["driver_share"] < share and others:
        runner_up = max(others, key=lambda k: sign * log_factors[k])
        cause += (
            f"; the {runner_up} factor adds x{fmt(math.exp(log_factors[runner_up] / n_links))} "
            "per layer"
        )
    return Attribution(log_factors, driver, evidence, cause, fix)


def explain(driver, sign, evidence, log_factors, n_links) -> tuple[str, str]:
    """Cause and fix in words for the driving factor."""
    per = {k: math.exp(log_factors.get(k, 0.0) / n_links) for k in FACTORS}
    split = f"activation factor x{fmt(per['activation'])}, weight factor x{fmt(per['weight'])}"
    if driver == "normalisation":
        return _normalisation(per, sign)
    if driver == "weight":
        return _weight(per, sign, evidence, split)
    if driver == "activation":
        return _activation(sign, evidence, split)
    if sign < 0:
        return (
            "weight_norm was not recorded, so weight scale and activation cannot be separated",
            "use ReLU with He init (sigma_w^2 = 2), or add residual connections / normalisation",
        )
    return (
        "weight_norm was not recorded, so weight scale and activation cannot be separated",
        f"{CLIP_FIX}, or lower the learning rate by 10x",
    )


def _normalisation(per, sign) -> tuple[str, str]:
    gain = per["normalisation"]
    if sign > 0:
        return (
            f"normalisation layers: the backward through each multiplies the gradient by "
            f"x{fmt(gain)} (BatchNorm at init explodes with depth, Yang et al. 2019)",
            f"add residual connections around the normalised blocks, or {CLIP_FIX}",
        )
    return (
        f"normalisation layers shrink the gradient by x{fmt(gain)} each",
        "add residual connections around the normalised blocks",
    )


def _weight(per, sign, evidence, split) -> tuple[str, str]:
    relu = "relu" in evidence["activations"]
    need = "2 (He init)" if relu else "1 (Glorot/LeCun init)"
    init = (
        "nn.init.kaiming_normal_(w, nonlinearity='relu')" if relu else "nn.init.xavier_normal_(w)"
    )
    scale = 1.0 / per["weight"]
    size = "small" if sign < 0 else "large"
    cause = f"too {size} an init scale ({split}): sigma_w^2 should be about {need}"
    fix = f"scale the weights by x{fmt(scale)} ({init})"
    if sign > 0:
        fix += f", and {CLIP_FIX}"
    return cause, fix


def _activation(sign, evidence, split) -> tuple[str, str]:
    acts, sat, dead = evidence["activations"], evidence["saturated_frac"], evidence["dead_frac"]
    if sign > 0:
        return (
            f"the activation's slope amplifies the gradient ({split})",
            f"use an activation with slope <= 1 (tanh, ReLU) and {CLIP_FIX}",
        )
    if "sigmoid" in acts:
        return (
            f"the sigmoid derivative, at most 1/4 ({_pct(sat)} of the units saturated; {split})",
            "use ReLU with He init (sigma_w^2 = 2), or add residual connections / normalisation",
        )
    if "tanh" in acts and sat >= MOSTLY_SATURATED:
        return (
            f"saturated tanh units ({_pct(sat)} of the units in their flat tails; {split})",
            "scale the weights to sigma_w^2 = 1 (Glorot/LeCun init) and normalise the inputs, "
            "or add LayerNorm before the tanh",
        )
    if "tanh" in acts:
        return (
            f"tanh in its ordered phase: sigma_w^2 E[tanh'(z)^2] < 1 per layer (Schoenholz et "
            f"al. 2017; {_pct(sat)} of the units saturated; {split})",
            "move to the tanh critical line: raise sigma_w^2 (about 1.76 for sigma_b^2 = 0.05, "
            "THEORY.md) with orthogonal init, or add residual connections / normalisation",
        )
    if "relu" in acts:
        return (
            f"dead ReLU units ({_pct(dead)} of the units never active; {split})",
            "lower the learning rate by 10x, use LeakyReLU, and init with He (sigma_w^2 = 2)",
        )
    return (
        f"the activation derivative ({split})",
        "use ReLU with He init (sigma_w^2 = 2), or add residual connections / normalisation",
    )


def _pct(frac: float) -> str:
    return "an unknown share" if not math.isfinite(frac) else f"{frac:.0%}"


def _is_nan(value) -> bool:
    return isinstance(value, float) and math.isnan(value)
