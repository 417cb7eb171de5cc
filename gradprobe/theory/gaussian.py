"""Gaussian expectations E[f(h)], h ~ N(0, q): quadrature, and the closed forms of THEORY.md.

Quadrature is Gauss-Legendre on z in [-Z, 0] and [0, Z] separately (h = sqrt(q) z): the
split at 0 makes it exact to double precision for the ReLU family, whose kink sits there,
where plain Gauss-Hermite (numpy.polynomial.hermite_e.hermegauss) converges only
algebraically; for smooth activations both agree to ~1e-12.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.polynomial.legendre import leggauss

Z_MAX = 12.0  # P(|z| > 12) = 3.6e-33: the truncated tails are below double precision
N_NODES = (
    192  # per half-line; closed forms and quadrature agree to 1e-13 (tests/test_theory_gaussian)
)


def _nodes() -> tuple[np.ndarray, np.ndarray]:
    """Nodes z (n,) and weights (n,) with sum w f(z) = E[f(z)], z ~ N(0, 1)."""
    x, w = leggauss(N_NODES)
    half = 0.5 * Z_MAX * (x + 1.0)  # [-1, 1] -> [0, Z]
    weight = 0.5 * Z_MAX * w * np.exp(-0.5 * half**2) / math.sqrt(2 * math.pi)
    return np.concatenate([-half[::-1], half]), np.concatenate([weight[::-1], weight])


Z_NODES, Z_WEIGHTS = _nodes()


def gaussian_points(q: np.ndarray) -> np.ndarray:
    """Quadrature points h = sqrt(q) z for each variance.

    Args:
        q: array of shape (k,), variances >= 0.

    Returns:
        array of shape (k, n_nodes).
    """
    return np.sqrt(np.asarray(q, dtype=float))[:, None] * Z_NODES[None, :]


def expect(values: np.ndarray) -> np.ndarray:
    """E over the quadrature: values of shape (k, n_nodes) at `gaussian_points` -> (k,)."""
    return values @ Z_WEIGHTS


# -- closed forms, h ~ N(0, q); each returns an array shaped like q ------------------------
def linear_dphi2(q):
    """E[phi'(h)^2] = 1 for phi(h) = h."""
    return np.ones_like(np.asarray(q, dtype=float))


def linear_phi2(q):
    """E[h^2] = q."""
    return np.asarray(q, dtype=float) * 1.0


def leaky_dphi2(q, slope: float = 0.0):
    """(1 + a^2) / 2 for max(h, a h); a = 0 is ReLU's 1/2 (THEORY.md)."""
    return np.full_like(np.asarray(q, dtype=float), (1.0 + slope**2) / 2)


def leaky_phi2(q, slope: float = 0.0):
    """(1 + a^2) q / 2: each half-line holds half the variance."""
    return (1.0 + slope**2) * np.asarray(q, dtype=float) / 2


def elu_dphi2(q, alpha: float = 1.0, scale: float = 1.0):
    """scale^2 [1/2 + alpha^2 e^{2q} Phi(-2 sqrt q)] (THEORY.md; SELU: scale = lambda).

    Uses E[e^{t h}; h < 0] = e^{t^2 q / 2} Phi(-t sqrt q), through erfcx so that large q
    does not overflow e^{2q}.
    """
    q = np.asarray(q, dtype=float)
    return scale**2 * (0.5 + alpha**2 * _exp_tail(2.0, q))


def elu_phi2(q, alpha: float = 1.0, scale: float = 1.0):
    """scale^2 [q/2 + alpha^2 (e^{2q} Phi(-2 sqrt q) - 2 e^{q/2} Phi(-sqrt q) + 1/2)]:
    E[(e^h - 1)^2; h < 0] expanded with the same tail integral."""
    q = np.asarray(q, dtype=float)
    negative = _exp_tail(2.0, q) - 2.0 * _exp_tail(1.0, q) + 0.5
    return scale**2 * (q / 2 + alpha**2 * negative)


def _exp_tail(t: float, q: np.ndarray) -> np.ndarray:
    """E[e^{t h}; h < 0] = e^{t^2 q/2} Phi(-t sqrt q), via erfcx to stay finite at large q."""
    x = t * np.sqrt(q) / math.sqrt(2)  # Phi(-t sqrt q) = erfc(x) / 2
    return 0.5 * _erfcx(x)  # e^{x^2} erfc(x) / 2, and x^2 = t^2 q / 2


def _erfcx(x: np.ndarray) -> np.ndarray:
    """e^{x^2} erfc(x) for x >= 0: direct below 25, asymptotic series above (rel. err 1e-16)."""
    x = np.asarray(x, dtype=float)
    out = np.empty_like(x)
    small = x < 25.0
    out[small] = np.exp(x[small] ** 2) * np.vectorize(math.erfc)(x[small])
    big = x[~small]
    inv2 = 1.0 / (2.0 * big**2)
    out[~small] = (1.0 - inv2 + 3.0 * inv2**2 - 15.0 * inv2**3) / (big * math.sqrt(math.pi))
    return out


SELU_SCALE = 1.0507009873554805  # lambda, Klambauer et al. 2017 (torch.nn.SELU)
SELU_ALPHA = 1.6732632423543772  # alpha, Klambauer et al. 2017 (torch.nn.SELU)


def gelu_dphi2(q):
    """GELU, phi(h) = h Phi(h): THEORY.md's closed form of E[phi'(h)^2]."""
    q = np.asarray(q, dtype=float)
    return (
        0.25
        + np.arcsin(q / (1 + q)) / (2 * math.pi)
        + q / (math.pi * (1 + q) * np.sqrt(1 + 2 * q))
        + q / (2 * math.pi * (1 + 2 * q) ** 1.5)
    )


def gelu_phi2(q):
    """E[(h Phi(h))^2] = q/4 + q arcsin(q/(1+q)) / (2 pi) + q^2 / (pi (1+q) sqrt(1+2q)).

    From Phi(h)^2 = P(x1 < h, x2 < h) with x1, x2 ~ N(0, 1) independent of h, and
    Gaussian integration by parts (Stein's lemma) on h^2; checked against quadrature.
    """
    q = np.asarray(q, dtype=float)
    return (
        q / 4
        + q * np.arcsin(q / (1 + q)) / (2 * math.pi)
        + q**2 / (math.pi * (1 + q) * np.sqrt(1 + 2 * q))
    )
