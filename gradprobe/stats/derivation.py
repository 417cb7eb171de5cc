"""From sufficient statistics to the named quantities of a Record (host side, numpy)."""

from __future__ import annotations

import numpy as np

from gradprobe.stats.slots import SLOT

# Per-step slots (one row per step, not per layer).
STEP_SLOTS = ("loss_sum", "loss_count", "global_sumsq", "global_numel")
STEP_SLOT = {name: i for i, name in enumerate(STEP_SLOTS)}


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, NaN where den is 0 (nothing measured)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _sqrt_where(sumsq: np.ndarray, measured: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.where(measured, np.sqrt(sumsq), np.nan)


def _grad_quantities(s) -> dict[str, np.ndarray]:
    w_n, b_n = s("g_w_numel"), s("g_b_numel")
    return {
        "grad_norm": _sqrt_where(s("g_w_sumsq"), w_n > 0),
        "bias_grad_norm": _sqrt_where(s("g_b_sumsq"), b_n > 0),
        "delta_norm": _sqrt_where(s("delta_sumsq"), s("delta_n") > 0),
        "grad_abs_mean": _ratio(s("g_w_abs_sum"), np.where(s("g_counted") > 0, w_n, 0)),
        "grad_abs_max": np.where((w_n > 0) & (s("g_counted") > 0), s("g_w_abs_max"), np.nan),
        **_nonfinite(
            "grad",
            s("g_nonfinite"),
            s("g_counted"),
            s("g_w_sumsq") + s("g_b_sumsq"),
            w_n + b_n,
        ),
    }


def _nonfinite(prefix: str, count, counted, sums, measured) -> dict[str, np.ndarray]:
    """PREFIX_nonfinite and PREFIX_all_finite.

    The count where it was taken (detail steps); elsewhere 0 when the sums are finite (a
    finite sum of squares proves every element finite) and NaN (unknown) when not.
    all_finite is 1 or 0 wherever anything was measured: from the count where there is
    one, else from the sums, which are non-finite when an element is (or, in float32,
    when a norm passes ~1.8e19: a value no float32 computation survives either).
    """
    with np.errstate(invalid="ignore"):
        finite_sums = np.isfinite(sums)
        proven_clean = np.where(finite_sums, 0.0, np.nan)
        has_count = counted > 0
        all_finite = np.where(has_count, count == 0, finite_sums).astype(np.float64)
    return {
        f"{prefix}_nonfinite": np.where(
            measured > 0, np.where(has_count, count, proven_clean), np.nan
        ),
        f"{prefix}_all_finite": np.where(measured > 0, all_finite, np.nan),
    }


def _weight_quantities(s) -> dict[str, np.ndarray]:
    weight_norm = _sqrt_where(s("w_sumsq"), s("w_numel") > 0)
    update_norm = _sqrt_where(s("u_sumsq"), s("u_numel") > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        update_ratio = update_norm / weight_norm
    return {
        "weight_norm": weight_norm,
        "update_norm": update_norm,
        "update_ratio": update_ratio,
        "weight_change_mean": _ratio(s("u_abs_sum"), s("u_numel")),
    }


def _activation_quantities(s) -> dict[str, np.ndarray]:
    count = s("a_count")
    mean = _ratio(s("a_sum"), count)
    with np.errstate(invalid="ignore"):
        var = np.maximum(_ratio(s("a_sumsq"), count) - mean**2, 0.0)
    abs_min = s("a_abs_min_nonzero")
    return {
        "act_mean": mean,
        "act_std": np.sqrt(var),
        "saturated_frac": _ratio(s("a_sat"), s("a_sat_count")),  # 0/0 off detail steps
        "dead_frac": _ratio(s("a_dead"), s("a_units")),
        **_nonfinite(
            "act",
            s("a_nonfinite"),
            s("a_counted"),
            s("a_sum") + s("a_sumsq"),
            count,
        ),
        # +inf means no nonzero element was seen: nothing to report
        "abs_min_nonzero": np.where((s("a_counted") > 0) & (abs_min < np.inf), abs_min, np.nan),
    }


def derive(states: np.ndarray) -> dict[str, np.ndarray]:
    """Per-layer quantities from states.

    Args:
        states: array of shape (n_steps, n_layers, N_SLOTS) (see gradprobe.stats.slots).

    Returns:
        dict quantity -> array of shape (n_steps, n_layers), NaN where not measured.
    """
    states = np.asarray(states, dtype=np.float64)

    def s(name: str) -> np.ndarray:
        return states[..., SLOT[name]]

    out = _grad_quantities(s)
    out.update(_weight_quantities(s))
    out.update(_activation_quantities(s))
    return out


def derive_steps(step_states: np.ndarray) -> dict[str, np.ndarray]:
    """Per-step quantities from step states of shape (n_steps, len(STEP_SLOTS))."""
    st = np.asarray(step_states, dtype=np.float64)
    loss = _ratio(st[:, STEP_SLOT["loss_sum"]], st[:, STEP_SLOT["loss_count"]])
    measured = st[:, STEP_SLOT["global_numel"]] > 0
    global_norm = _sqrt_where(st[:, STEP_SLOT["global_sumsq"]], measured)
    return {"loss": loss, "global_grad_norm": global_norm}
