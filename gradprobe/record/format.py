"""How a measured number is written for people: `gradprobe show`, the report, the tables."""

from __future__ import annotations

import math

# What a per-layer summary tabulates (`gradprobe show`, the report's per-layer table): the
# gradient signal reaching each layer, the size of its updates, and the state of its units.
SUMMARY_QUANTITIES = (
    "delta_norm",
    "grad_norm",
    "update_ratio",
    "act_mean",
    "saturated_frac",
    "dead_frac",
)


def fmt(x: float) -> str:
    """A number in at most 3 significant digits; "-" for NaN (not measured).

    Scientific below 1e-3 and from 1e4 on, where fixed notation would hide the digits.
    """
    if math.isnan(x):
        return "-"
    if x == 0:
        return "0"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    text = f"{x:.2e}" if abs(x) < 1e-3 else f"{x:.3g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text
