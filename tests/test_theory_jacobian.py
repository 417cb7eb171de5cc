"""Jacobian spectrum from probes against the full Jacobian and its SVD (small nets)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradprobe.theory import jacobian_spectrum

torch.set_num_threads(1)


def _exact(model, x):
    """(m1, m2, s_max^2) from torch.autograd.functional.jacobian and SVD, per example."""
    jac = torch.stack([torch.autograd.functional.jacobian(model, xb) for xb in x])  # (B, out, in)
    s2 = torch.linalg.svdvals(jac) ** 2  # (B, min(out, in))
    n_in = x.shape[1]
    return (
        float((s2.sum(1) / n_in).mean()),
        float((s2.pow(2).sum(1) / n_in).mean()),
        float(s2.max()),
    )


@pytest.mark.parametrize("act", [nn.Tanh, nn.ReLU])
def test_probes_match_the_full_jacobian(act):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(6, 12), act(), nn.Linear(12, 12), act(), nn.Linear(12, 5)
    ).double()
    x = torch.randn(4, 6, dtype=torch.float64)
    m1, m2, s_max2 = _exact(model, x)
    got = jacobian_spectrum(
        model, x, n_probes=4000, n_iter=200, generator=torch.Generator().manual_seed(1)
    )
    assert got.m1 == pytest.approx(m1, rel=0.03)  # Hutchinson: rel. sd ~ sqrt(2 / (4000 * 6 * 4))
    assert got.m2 == pytest.approx(m2, rel=0.06)
    assert got.s_max2 == pytest.approx(s_max2, rel=1e-6)  # power iteration converged
    assert got.spread == pytest.approx((m2 - m1 * m1) / (m1 * m1), rel=0.1)
    assert got.max_over_mean == pytest.approx(got.s_max2 / got.m1)
    assert "m1=" in repr(got)


def test_orthogonal_linear_net_is_an_isometry():
    model = nn.Sequential(*[nn.Linear(16, 16, bias=False) for _ in range(3)]).double()
    for layer in model:
        nn.init.orthogonal_(layer.weight)
    got = jacobian_spectrum(model, torch.randn(3, 16, dtype=torch.float64), n_probes=8, n_iter=5)
    assert got.m1 == pytest.approx(1.0, rel=0.15)
    assert got.s_max2 == pytest.approx(1.0, abs=1e-9)  # every singular value is 1
    assert got.m2 == pytest.approx(1.0, rel=0.3)


def test_bad_input():
    model = nn.Linear(3, 2)
    with pytest.raises(ValueError, match="n_probes=0 must be an int >= 1"):
        jacobian_spectrum(model, torch.randn(2, 3), n_probes=0)
    with pytest.raises(ValueError, match="batch dimension"):
        jacobian_spectrum(model, torch.randn(3))
