"""The raw numbers of a Record that a human reads to label a case, computed without any
diagnosis rule: gains over depth and time, saturation, dead units, update ratios, loss.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

import gradprobe as gp


def _nanmedian(x: np.ndarray, axis: int | None = None) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices give NaN, as meant
        return np.nanmedian(np.where(np.isfinite(x), x, np.nan), axis=axis)


def _nanmax(x: np.ndarray) -> float:
    finite = x[np.isfinite(x)]
    return float(finite.max()) if finite.size else float("nan")


def depth_gains(rec: gp.Record) -> np.ndarray:
    """Array of shape (n_measured,): median over steps of delta_norm[l] / delta_norm[last],
    over the layers whose delta was measured (a submodule whose forward never runs, such
    as MultiheadAttention's out_proj, has none), in forward order."""
    delta = rec["delta_norm"]
    delta = delta[:, np.isfinite(delta).any(axis=0)]
    if delta.shape[1] == 0:
        return np.full(1, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _nanmedian(delta / delta[:, -1:], axis=0)


def time_gain(rec: gp.Record) -> float:
    """Median over steps and recurrent layers of delta_t[t=0] / delta_t[t=T-1], or NaN.

    Reads rec.series["delta_norm_t"] of shape (n_steps, n_layers, T) when the probe
    recorded it: below 1 the gradient shrinks going back in time, above 1 it grows.
    """
    series = rec.series.get("delta_norm_t")
    if series is None or series.shape[-1] < 2:
        return float("nan")
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(_nanmedian(series[..., 0] / series[..., -1]))


def loss_course(rec: gp.Record) -> tuple[float, float, float]:
    """(first, last, min) of the logged loss over its finite values; NaN when not logged."""
    loss = rec.loss
    finite = loss[np.isfinite(loss)]
    if finite.size == 0:
        return float("nan"), float("nan"), float("nan")
    return float(finite[0]), float(loss[-1]), float(finite.min())


def late_improvement(rec: gp.Record, window: int = 5) -> float:
    """Relative fall of the loss over the second half of the run: (m - l) / m, m and l the
    medians of the `window` losses from the middle step on and of the last `window`.

    Near 0 with the loss far from 0 is a plateau; NaN when the loss is not logged.
    """
    loss = rec.loss
    half = len(loss) // 2
    if half < window or not np.isfinite(loss[half:]).all():
        return float("nan")
    mid, last = np.median(loss[half : half + window]), np.median(loss[-window:])
    return float((mid - last) / mid)


def update_by_layer(rec: gp.Record) -> np.ndarray:
    """Array of shape (n_layers,): each layer's median update ratio over its steps."""
    return _nanmedian(rec["update_ratio"], axis=0) if "update_ratio" in rec else np.array([])


def per_layer_mean(rec: gp.Record, quantity: str, half: str = "all") -> np.ndarray:
    """Array of shape (n_layers,): the quantity's mean over the steps it was measured.

    Args:
        half: "first" or "second" half of the recorded steps, or "all" of them.
    """
    if quantity not in rec:
        return np.full(len(rec.layers), np.nan)
    x = rec[quantity]
    mid = len(x) // 2
    x = {"first": x[: max(mid, 1)], "second": x[mid:], "all": x}[half]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.where(np.isfinite(x), x, np.nan), axis=0)


def _worst(rec: gp.Record, quantity: str) -> tuple[float, float]:
    """The largest per-layer mean of a fraction in the first and in the second half."""
    return (
        _nanmax(per_layer_mean(rec, quantity, "first")),
        _nanmax(per_layer_mean(rec, quantity, "second")),
    )


def evidence(rec: gp.Record) -> dict[str, Any]:
    """The case's raw numbers, by name (see `line` for their meaning)."""
    gains = depth_gains(rec)
    first, last, low = loss_course(rec)
    return {
        "gain_first": float(gains[0]),
        "gain_min": _nanmin(gains),
        "gain_max": _nanmax(gains),
        "gain_time": time_gain(rec),
        # (first half, second half): units saturate or die as training goes on, or recover
        "saturated_max": _worst(rec, "saturated_frac"),
        "dead_max": _worst(rec, "dead_frac"),
        # the least and most updated layers (medians over steps): a learning rate that is
        # too small leaves even the best-fed layer still; one too large moves every layer
        "update_low": _nanmin(update_by_layer(rec)),
        "update_high": _nanmax(update_by_layer(rec)),
        "update_max": _nanmax(rec["update_ratio"]),
        "loss_first": first,
        "loss_last": last,
        "loss_min": low,
        "loss_late": late_improvement(rec),
        "first_nonfinite": rec.first_nonfinite(),
    }


def _nanmin(x: np.ndarray) -> float:
    finite = x[np.isfinite(x)]
    return float(finite.min()) if finite.size else float("nan")


def line(ev: dict[str, Any]) -> str:
    """One line: depth gains delta[l]/delta[last] (first layer, min, max), time gain
    delta_t[0]/delta_t[T-1], largest per-layer mean saturated / dead fraction in the first
    and the second half of the run, update ratio of the least
    and most updated layer (medians) and its largest single value, loss first -> last (min,
    relative fall over the second half), where the first non-finite value appeared."""
    nf = ev["first_nonfinite"]
    sat, dead = ev["saturated_max"], ev["dead_max"]
    where = "-" if nf is None else f"step {nf['step']} {nf['layer']} {nf['where']}"
    return (
        f"gain first={ev['gain_first']:.1e} min={ev['gain_min']:.1e} max={ev['gain_max']:.1e} "
        f"time={ev['gain_time']:.1e} | sat={sat[0]:.2f}/{sat[1]:.2f} "
        f"dead={dead[0]:.2f}/{dead[1]:.2f} | "
        f"upd {ev['update_low']:.0e}..{ev['update_high']:.0e} max={ev['update_max']:.0e} | "
        f"loss {ev['loss_first']:.3g}->{ev['loss_last']:.3g} (min {ev['loss_min']:.3g}, "
        f"late {ev['loss_late']:+.1%}) | "
        f"nonfinite {where}"
    )
