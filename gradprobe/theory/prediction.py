"""`Prediction`: the per-layer mean-field forecast of one network, with its verdict.

Quantities (arrays of shape (n_layers,), forward order; nan where not predicted):
    q                 variance of the layer's output h^l (pre-activation)
    chi               E||delta^l||^2 / E||delta^{l+1}||^2, the layer's mean gain (nan: last)
    log_gain          ln chi (positive: the gradient grows toward the input)
    log_gain_typical  log_gain - Var/2: the median (mean-of-log) gain at finite width
    gain_sd           sd of the log-gain at finite width, sqrt(kappa / n) (Hanin 2018)
    cum_log_gain      ln E||delta^l||^2 / E||delta^L||^2, L the last layer
    cum_log_gain_typical, cum_sd   the same, mean-of-log, and its sd (the band)
    kappa, width, sigma_w2, sigma_b2
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

# Nielsen's vanishing-gradient cut: the first layer learning ~100x slower than the last
# (gradprobe.diagnose.thresholds: vanish_ratio 1e-2 and explode_ratio 1e2, on norms).
VANISH_RATIO = 1e-2
EXPLODE_RATIO = 1e2
# |ln chi_1| < 1e-3 is a depth scale over 1000 layers: Schoenholz et al. 2017 train nets
# up to ~6 xi deep, so such a net is critical for any depth one builds.
CRITICAL_TOL = 1e-3


class Prediction:
    """The theory's forecast for one network at initialisation.

    Attributes:
        layers: layer names, forward order.
        input_var: the input's mean square per feature.
        flags: per layer, why it is not predicted, or None.
        fixed: the deep-layer fixed point: {"q_star", "chi_1", "depth_scale", "phase",
            "activation", "sigma_w2", "sigma_b2"}, or None (residual / normalised nets).
    """

    def __init__(
        self, layers, values, *, input_var, flags, fixed=None, layer_types=None, activation=None
    ):
        self.layers = list(layers)
        self._deep_activation = activation  # the Activation of the deep layers, for critical_init
        self._values = {k: np.asarray(v, dtype=float) for k, v in values.items()}
        self.input_var = float(input_var)
        self.flags = list(flags)
        self.fixed = fixed
        self.layer_types = list(layer_types or ["Linear"] * len(self.layers))

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._values:
            raise KeyError(f"{key!r} is not one of: {', '.join(self._values)}")
        return self._values[key].copy()

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def keys(self) -> list[str]:
        """The per-layer quantities held."""
        return list(self._values)

    @property
    def total_log_gain(self) -> float:
        """ln E||delta^1||^2 / E||delta^L||^2: the whole net's gain (nan if not predicted)."""
        return float(self._values["cum_log_gain"][0])

    @property
    def chi_1(self) -> float | None:
        """chi at the fixed point q* of the deep layers, or None."""
        return None if self.fixed is None else self.fixed["chi_1"]

    @property
    def depth_scale(self) -> float | None:
        """xi = 1 / |ln chi_1| layers (inf at criticality), or None."""
        return None if self.fixed is None else self.fixed["depth_scale"]

    def __repr__(self) -> str:
        n = len(self.layers)
        fixed = ""
        if self.fixed is not None:
            fixed = f", chi_1={self.fixed['chi_1']:.4g} ({self.fixed['phase']})"
        return (
            f"Prediction({n} layers, input_var={self.input_var:g}, "
            f"total log-gain {self.total_log_gain:+.3g}{fixed})"
        )

    def to_dict(self) -> dict:
        """Everything, JSON-ready (nan and inf as None)."""

        def clean(x):
            return None if isinstance(x, float) and not math.isfinite(x) else x

        fixed = None if self.fixed is None else {k: clean(v) for k, v in self.fixed.items()}
        return {
            "layers": self.layers,
            "layer_types": self.layer_types,
            "input_var": self.input_var,
            "flags": self.flags,
            "fixed_point": fixed,
            "total_log_gain": clean(self.total_log_gain),
            "verdict": self.verdict(),
            "values": {k: [clean(float(x)) for x in v] for k, v in self._values.items()},
        }

    def to_json(self, path: str | Path | None = None) -> str:
        """The dict as JSON text, also written to `path` when given."""
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    def table_rows(self) -> list[dict]:
        """One dict per layer: name, type, q, chi, log_gain, cum_log_gain, band, flag."""
        rows = []
        for i, name in enumerate(self.layers):
            row = {"layer": name, "type": self.layer_types[i], "flag": self.flags[i]}
            for key in ("q", "chi", "log_gain", "cum_log_gain", "cum_sd"):
                row[key] = float(self._values[key][i])
            rows.append(row)
        return rows

    def verdict(self) -> str:
        """One line: vanishes / explodes / stable, by how much at the first layer, and the
        critical sigma_w^2 of the deep layers' activation at their bias variance."""
        cum = self._values["cum_log_gain"]
        flagged = [(n, f) for n, f in zip(self.layers, self.flags) if f]
        if not np.isfinite(cum[0]):
            where = f"{flagged[0][0]}: {flagged[0][1]}" if flagged else "no finite prediction"
            return f"not predicted ({where})"
        ratio = math.exp(0.5 * cum[0])  # in norm, ||delta^1|| / ||delta^L||
        word = (
            "vanishes"
            if ratio < VANISH_RATIO
            else "explodes"
            if ratio > EXPLODE_RATIO
            else "stable"
        )
        text = f"{word}: ||delta|| x{ratio:.1e} at the first layer ({self.layers[0]}) vs the last"
        typical = math.exp(0.5 * self._values["cum_log_gain_typical"][0])
        text += f" (typical at this width x{typical:.1e})"
        if self.fixed is not None:
            text += f"; chi_1 = {self.fixed['chi_1']:.3g} ({self.fixed['phase']}"
            if self.fixed["phase"] != "critical":
                text += f", depth scale {self.fixed['depth_scale']:.3g} layers"
            text += ")"
            text += _critical_text(self._deep_activation, self.fixed)
        return text


def _critical_text(activation, fixed: dict) -> str:
    from gradprobe.theory.critical import critical_init

    if activation is None:
        return ""
    try:
        sigma_w2 = critical_init(activation, fixed["sigma_b2"])
    except ValueError:
        return ""
    return (
        f"; critical sigma_w^2 for {fixed['activation']} at this bias variance "
        f"({fixed['sigma_b2']:.3g}) is {sigma_w2:.4g}"
    )
