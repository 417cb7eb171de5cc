"""Gaussian moments: closed forms against an independent quadrature, THEORY.md's table,
kappa values, and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gradprobe.theory import ACTIVATIONS, get_activation
from gradprobe.theory.critical import check_variance

Q = np.array([0.01, 0.1, 0.5, 1.0, 2.0, 4.0, 10.0])
CLOSED = [
    ("linear", {}),
    ("relu", {}),
    ("leaky_relu", {"slope": 0.2}),
    ("elu", {"alpha": 1.0}),
    ("elu", {"alpha": 0.5}),
    ("selu", {}),
    ("gelu", {}),
]


def _midpoint(f, q: float) -> float:
    """E[f(sqrt(q) z)] by the midpoint rule on 400,000 cells of [-12, 12] (the kink at 0 is a
    cell edge): independent of the library's Gauss-Legendre quadrature."""
    edges = np.linspace(-12.0, 12.0, 400_001)
    z = 0.5 * (edges[1:] + edges[:-1])
    density = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return float(np.sum(f(math.sqrt(q) * z) * density) * (edges[1] - edges[0]))


def _numpy_pair(name, params):
    """phi and phi' in numpy, written out by hand from the definitions."""
    a = params.get("alpha", 1.6732632423543772 if name == "selu" else 1.0)
    lam = 1.0507009873554805 if name == "selu" else 1.0
    slope = params.get("slope", 0.0)
    cdf = np.vectorize(lambda x: 0.5 * math.erfc(-x / math.sqrt(2)))
    pdf = lambda x: np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)  # noqa: E731
    return {
        "linear": (lambda h: h, lambda h: np.ones_like(h)),
        "relu": (lambda h: np.maximum(h, 0), lambda h: (h > 0) * 1.0),
        "leaky_relu": (lambda h: np.where(h > 0, h, slope * h),
                       lambda h: np.where(h > 0, 1.0, slope)),
        "elu": (lambda h: np.where(h > 0, h, a * np.expm1(np.minimum(h, 0))),
                lambda h: np.where(h > 0, 1.0, a * np.exp(np.minimum(h, 0)))),
        "selu": (lambda h: lam * np.where(h > 0, h, a * np.expm1(np.minimum(h, 0))),
                 lambda h: lam * np.where(h > 0, 1.0, a * np.exp(np.minimum(h, 0)))),
        "gelu": (lambda h: h * cdf(h), lambda h: cdf(h) + h * pdf(h)),
    }[name]  # fmt: skip


@pytest.mark.parametrize(("name", "params"), CLOSED, ids=lambda x: str(x))
def test_closed_forms_match_quadrature(name, params):
    act = get_activation(name, **params)
    phi, dphi = _numpy_pair(name, params)
    for q in Q[[0, 2, 3, 5, 6]]:
        assert abs(act.dphi2(q)[0] - _midpoint(lambda h: dphi(h) ** 2, q)) <= 1e-6
        assert abs(act.phi2(q)[0] - _midpoint(lambda h: phi(h) ** 2, q)) <= 1e-6 * max(1, q)
    # and the library's own quadrature (autograd phi') agrees with its closed form
    plain = get_activation(act.phi)
    np.testing.assert_allclose(plain.dphi2(Q), act.dphi2(Q), rtol=0, atol=1e-10)
    np.testing.assert_allclose(plain.phi2(Q), act.phi2(Q), rtol=1e-10, atol=1e-12)


# THEORY.md's table of E[phi'(h)^2] at q = 0.1, 0.5, 1, 2, 4
TABLE = {
    "tanh": [0.849, 0.592, 0.464, 0.350, 0.256],
    "sigmoid": [0.0596, 0.0514, 0.0448, 0.0370, 0.0290],
    "gelu": [0.303, 0.407, 0.456, 0.490, 0.506],
    "selu": [1.547, 1.213, 1.072, 0.947, 0.844],
}


@pytest.mark.parametrize("name", sorted(TABLE))
def test_moments_match_theory_table(name):
    got = get_activation(name).dphi2(np.array([0.1, 0.5, 1.0, 2.0, 4.0]))
    np.testing.assert_allclose(got, TABLE[name], rtol=1.5e-3)


def test_kappa_matches_theory():
    # kappa = 3 mu_2 / mu_1^2 - 1 at q = 1: linear 2, ReLU 5, tanh 3.75, sigmoid 2.41,
    # SELU 2.95, GELU 5.27 (THEORY.md, finite width)
    expected = {"linear": 2, "relu": 5, "tanh": 3.75, "sigmoid": 2.41, "selu": 2.95, "gelu": 5.27}
    for name, kappa in expected.items():
        assert abs(get_activation(name).kappa([1.0])[0] - kappa) <= 0.006


def test_any_callable_uses_quadrature_and_autograd():
    swish = get_activation(lambda x: x * torch.sigmoid(x))
    # E[phi'^2] of swish at q -> 0 is phi'(0)^2 = 1/4
    assert abs(swish.dphi2([1e-8])[0] - 0.25) < 1e-6
    assert "quadrature" in repr(swish)


def test_unknown_activation_lists_the_allowed_ones():
    with pytest.raises(ValueError, match="sigmod.*not one of: " + ", ".join(ACTIVATIONS)):
        get_activation("sigmod")
    with pytest.raises(ValueError, match="unknown parameter"):
        get_activation("elu", slope=0.1)
    with pytest.raises(ValueError, match="not one of"):
        get_activation(3)


def test_negative_or_nonfinite_variances_are_refused():
    for bad in (-0.1, math.nan, math.inf, "1"):
        with pytest.raises(ValueError, match="must be a finite number >= 0"):
            check_variance("q", bad)
