"""The edge of chaos: the sigma_w^2 at which chi_1 = 1 for a given bias variance.

On the critical line (Schoenholz et al. 2017, arXiv:1611.01232) the fixed point q* of
q = sigma_w^2 E[phi(h)^2] + sigma_b^2 has chi_1 = sigma_w^2 E[phi'(h)^2] = 1, h ~ N(0, q*).
Parametrised by q*: sigma_w^2 = 1 / E[phi'^2](q*) and then
sigma_b^2(q*) = q* - E[phi^2](q*) / E[phi'^2](q*); we solve sigma_b^2(q*) = bias_var for
the smallest q* >= 0 by a grid scan and bisection.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from gradprobe.theory.activations import Activation, get_activation

Q_GRID = np.concatenate([[0.0], np.geomspace(1e-10, 1e4, 600)])  # q* searched up to 1e4
BISECTIONS = 80  # halves the bracket to below double precision from any grid interval
HOMOGENEOUS_TOL = 1e-9  # E[phi'^2] constant in q to this (relative): chi is q-free (ReLU)


def check_variance(name: str, value: float) -> float:
    """`value` as a float if it is finite and >= 0, else ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
        raise ValueError(f"{name}={value!r} must be a finite number >= 0")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}={value!r} must be a finite number >= 0 (a variance)")
    return float(value)


def _bias_of_q(act: Activation, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sigma_b^2(q*), sigma_w^2(q*)) along the critical line, arrays shaped like q."""
    m = act.moments(q)
    sigma_w2 = 1.0 / m["dphi2"]
    return q - sigma_w2 * m["phi2"], sigma_w2


def critical_point(
    activation: str | Callable | Activation, bias_var: float = 0.0, **params
) -> tuple[float, float]:
    """(sigma_w^2, q*) on the edge of chaos, chi_1 = 1, at bias variance `bias_var`.

    Args:
        activation: a name from `ACTIVATIONS`, an `Activation` or an elementwise callable.
        bias_var: sigma_b^2 >= 0.
        **params: the activation's parameters (slope, alpha, approximate, beta).

    Returns:
        (sigma_w^2, q*). For positively homogeneous activations (linear, ReLU, leaky ReLU)
        chi does not depend on q and q* is nan (no finite fixed point when bias_var > 0).

    Raises:
        ValueError: negative bias_var, unknown activation, or no critical point for
            q* up to 1e4 (e.g. phi'(h) = 0 everywhere).
    """
    bias_var = check_variance("bias_var", bias_var)
    act = get_activation(activation, **params)
    bias, sigma_w2 = _bias_of_q(act, Q_GRID)
    dphi2 = 1.0 / sigma_w2
    if np.ptp(dphi2) <= HOMOGENEOUS_TOL * np.abs(dphi2).max():
        return float(sigma_w2[0]), (0.0 if bias_var == 0 else math.nan)
    if abs(bias[0] - bias_var) <= 1e-12:
        return float(sigma_w2[0]), 0.0
    above = np.flatnonzero((bias[1:] >= bias_var) & (bias[:-1] < bias_var))
    if not above.size or not np.all(np.isfinite(sigma_w2)):
        raise ValueError(
            f"activation {act.name!r} has no edge of chaos at bias_var={bias_var} for q* "
            f"in [0, {Q_GRID[-1]:g}]: sigma_b^2(q*) ranges {np.nanmin(bias):.3g} to "
            f"{np.nanmax(bias):.3g}"
        )
    lo, hi = Q_GRID[above[0]], Q_GRID[above[0] + 1]
    for _ in range(BISECTIONS):
        mid = 0.5 * (lo + hi)
        if _bias_of_q(act, np.array([mid]))[0][0] < bias_var:
            lo = mid
        else:
            hi = mid
    q_star = 0.5 * (lo + hi)
    return float(_bias_of_q(act, np.array([q_star]))[1][0]), float(q_star)


def critical_init(activation: str | Callable | Activation, bias_var: float = 0.0) -> float:
    """sigma_w^2 = fan_in * Var(W) on the edge of chaos (chi_1 = 1) at this bias variance.

    tanh: 1.000 at bias_var 0, 1.761 at 0.05, 3.443 at 1.0 (THEORY.md); ReLU: 2 (He);
    linear: 1. To initialise a Linear layer: W ~ N(0, critical_init(...) / fan_in).

    Args:
        activation: a name from `ACTIVATIONS`, an `Activation` or an elementwise callable.
        bias_var: sigma_b^2 >= 0, the variance of the biases.

    Returns:
        sigma_w^2, a float.

    Raises:
        ValueError: negative bias variance, unknown activation, or no critical point.
    """
    return critical_point(activation, bias_var)[0]
