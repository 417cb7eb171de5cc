"""The length map q^l forward, the gain of ||delta||^2 backward, layer by layer (THEORY.md).

Forward (s: mean square of the signal a layer reads, s = input_var for the first):
    q^l = sigma_w^2 s + sigma_b^2                                  (pre-activation variance)
    u = h (no norm) or LayerNorm(h): variance norm_gain2 + norm_bias2
    s' = E[phi(u)^2]  (plain)   or   s + alpha^2 E[phi(u)^2]  (residual, zero-mean branch)
Backward, with B the ||delta||^2 of the signal leaving layer l and D_l = E||delta^l||^2 at
its output h^l (the probe's delta):
    D_l = c_l B,  c_l = E[phi'(u)^2] (norm_gain2 / q^l with LayerNorm) (alpha^2 if residual)
    B_in = sigma_w^2 D_l  (plain)   or   B (1 + sigma_w^2 c_l)  (residual, 1 + alpha^2 chi_F)
log_gain_l = ln(D_l / D_{l+1}); for a plain chain it is ln chi(q^l),
chi = sigma_{w,l+1}^2 E[phi'(h^l)^2] (Poole et al. 2016; Schoenholz et al. 2017).
"""

from __future__ import annotations

import math

import numpy as np

from gradprobe.theory.activations import Activation, get_activation
from gradprobe.theory.spec import LayerSpec, NetworkSpec

_LINEAR = get_activation("linear")
Q_INF = 1e12  # a q beyond which the length map has diverged (ReLU chaotic phase)
FIXED_POINT_GRID = 400  # grid points per side when bracketing q*


def _moments(layer: LayerSpec, q_u: float) -> dict[str, float]:
    act = layer.activation or _LINEAR
    m = act.moments(np.array([q_u]))
    kappa = 3 * m["dphi4"][0] / m["dphi2"][0] ** 2 - 1 if m["dphi2"][0] > 0 else math.nan
    return {"phi2": float(m["phi2"][0]), "dphi2": float(m["dphi2"][0]), "kappa": float(kappa)}


def forward(spec: NetworkSpec, input_var: float) -> dict[str, np.ndarray]:
    """Per-layer q, local factor c and moments, from the input's mean square `input_var`.

    Returns:
        dict of arrays of shape (n_layers,): "q" (variance of h^l), "q_u" (at the
        activation's input), "phi2", "dphi2", "kappa", "c" (D_l / B); nan from the first
        layer not predicted on.
    """
    keys = ("q", "q_u", "phi2", "dphi2", "kappa", "c")
    out = {k: np.full(len(spec), math.nan) for k in keys}
    s = float(input_var)
    for i, layer in enumerate(spec.layers):
        if layer.not_predicted is not None or not math.isfinite(s):
            break
        q = layer.sigma_w2 * s + layer.sigma_b2
        q_u = layer.norm_gain2 + layer.norm_bias2 if layer.norm else q
        m = _moments(layer, q_u)
        c = m["dphi2"] * (layer.norm_gain2 / q if layer.norm else 1.0)
        if layer.alpha is not None:
            c *= layer.alpha**2
            s = s + layer.alpha**2 * m["phi2"]
        else:
            s = m["phi2"]
        for k, v in (("q", q), ("q_u", q_u), ("c", c), *m.items()):
            out[k][i] = v
    return out


def _log(x: float) -> float:
    if math.isnan(x):
        return math.nan
    return math.log(x) if x > 0 else -math.inf


def backward(spec: NetworkSpec, fwd: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """log D_l relative to the last layer, log gains and the finite-width variance.

    Returns:
        dict of arrays of shape (n_layers,): "log_delta2" (ln E||delta^l||^2 / E||delta^L||^2),
        "log_gain" (ln D_l / D_{l+1}; nan for the last layer), "gain_var" (Var of the
        log-gain at width n: kappa / n, Hanin 2018; residual: see `_residual_var`).
    """
    n = len(spec)
    log_d, var = np.full(n, math.nan), np.full(n, math.nan)
    log_b = 0.0  # ln B after the last layer: the reference
    for i in reversed(range(n)):
        layer, c = spec.layers[i], fwd["c"][i]
        log_d[i] = 0.0 if (i == n - 1 and layer.alpha is None) else _log(c) + log_b
        if layer.alpha is not None:
            log_b += math.log1p(layer.sigma_w2 * c)
        else:
            log_b = _log(layer.sigma_w2) + log_d[i]
    for i in range(n - 1):
        nxt = spec.layers[i + 1]
        var[i] = fwd["kappa"][i] / spec.layers[i].width
        if nxt.alpha is not None:
            var[i] = _residual_var(nxt.sigma_w2 * fwd["c"][i + 1], fwd["kappa"][i + 1], nxt.width)
    log_gain = np.append(log_d[:-1] - log_d[1:], math.nan)
    return {"log_delta2": log_d - log_d[-1], "log_gain": log_gain, "gain_var": var}


def _residual_var(a: float, kappa: float, n: int) -> float:
    """Var ln(1 + a') for the stream factor ||delta_y + W^T delta_F||^2 / ||delta_y||^2.

    The branch term a' has relative variance kappa / n (as a plain layer) and the cross term
    2 delta_y . W^T delta_F has variance 4 a / n, so Var ~ (a^2 kappa + 4 a) / ((1 + a)^2 n)
    (first-order expansion of the log; approximate, THEORY.md gives no residual band).
    """
    return (a * a * kappa + 4 * a) / ((1 + a) ** 2 * n)


def _map_gap(act: Activation, sigma_w2: float, sigma_b2: float, q: np.ndarray) -> np.ndarray:
    return sigma_w2 * act.phi2(q) + sigma_b2 - q


def fixed_point(act: Activation, sigma_w2: float, sigma_b2: float, q0: float) -> float:
    """The q* that the length map q -> sigma_w^2 E[phi^2](q) + sigma_b^2 reaches from q0.

    Iterating the map moves q toward the nearest root of the gap in the direction of its
    sign, so q* is bracketed on a grid and bisected. A map that is the identity (ReLU with
    He init and no bias) keeps q0; one that grows without bound gives inf.
    """
    act = act or _LINEAR
    gap0 = _map_gap(act, sigma_w2, sigma_b2, np.array([q0]))[0]
    if abs(gap0) <= 1e-12 * max(q0, 1.0):
        return float(q0)
    grid = (
        np.geomspace(q0, Q_INF, FIXED_POINT_GRID)
        if gap0 > 0
        else np.linspace(q0, 0, FIXED_POINT_GRID)
    )
    gaps = _map_gap(act, sigma_w2, sigma_b2, grid)
    crossing = np.flatnonzero(np.sign(gaps) != np.sign(gap0))
    if not crossing.size:
        return math.inf if gap0 > 0 else 0.0
    lo, hi = grid[crossing[0] - 1], grid[crossing[0]]
    for _ in range(80):  # to double precision from any grid interval
        mid = 0.5 * (lo + hi)
        same = np.sign(_map_gap(act, sigma_w2, sigma_b2, np.array([mid]))[0]) == np.sign(gap0)
        lo, hi = (mid, hi) if same else (lo, mid)
    return 0.5 * (lo + hi)
