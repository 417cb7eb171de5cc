"""The edge of chaos: THEORY.md's tanh critical line, and chi_1 = 1 there."""

from __future__ import annotations

import numpy as np
import pytest

from gradprobe.theory import critical_init, critical_point, get_activation
from gradprobe.theory.length_map import fixed_point

# THEORY.md, tanh critical line: sigma_b^2 -> (sigma_w^2, q*)
TANH_LINE = {
    0.0: (1.000, 0.0),
    0.01: (1.424, 0.273),
    0.05: (1.761, 0.570),
    0.1: (1.986, 0.806),
    0.3: (2.505, 1.461),
    1.0: (3.443, 3.036),
    2.0: (4.266, 4.831),
}


@pytest.mark.parametrize("bias_var", sorted(TANH_LINE))
def test_tanh_critical_line_matches_the_table(bias_var):
    sigma_w2, q_star = critical_point("tanh", bias_var)
    assert abs(sigma_w2 - TANH_LINE[bias_var][0]) <= 0.005
    assert abs(q_star - TANH_LINE[bias_var][1]) <= 0.005
    assert critical_init("tanh", bias_var) == sigma_w2


@pytest.mark.parametrize("bias_var", [0.05, 0.3, 2.0])
def test_chi_1_is_one_at_the_fixed_point_of_the_critical_init(bias_var):
    tanh = get_activation("tanh")
    sigma_w2 = critical_init("tanh", bias_var)
    q_star = fixed_point(tanh, sigma_w2, bias_var, q0=1.0)
    assert abs(sigma_w2 * tanh.dphi2([q_star])[0] - 1) < 1e-9


def test_homogeneous_activations():
    assert critical_init("relu") == pytest.approx(2.0, abs=1e-12)  # He
    assert critical_init("relu", 0.3) == pytest.approx(2.0, abs=1e-12)
    assert critical_init("linear") == pytest.approx(1.0, abs=1e-12)
    assert critical_init("leaky_relu") == pytest.approx(2 / (1 + 0.01**2), rel=1e-9)


def test_sigmoid_critical_point_is_wide():
    # THEORY.md: N(0,1) weights and biases reach chi = 1 near n ~ 105 (sigma_w^2 = n)
    assert 100 < critical_init("sigmoid", 1.0) < 110


def test_bad_input():
    with pytest.raises(ValueError, match="bias_var=-0.1 must be a finite number >= 0"):
        critical_init("tanh", -0.1)
    with pytest.raises(ValueError, match="not one of"):
        critical_init("tanhh")
    with pytest.raises(ValueError, match="no edge of chaos"):
        critical_init("softplus", 0.0)  # like ReLU in the limit, never reaches chi_1 = 1


def test_fixed_point_phases():
    relu, tanh = get_activation("relu"), get_activation("tanh")
    assert fixed_point(relu, 2.0, 0.0, 0.7) == 0.7  # identity map: marginal
    assert fixed_point(relu, 3.0, 0.0, 0.7) == np.inf  # chaotic ReLU grows without bound
    assert fixed_point(relu, 1.0, 0.5, 0.7) == pytest.approx(1.0)  # q = q/2 + 1/2
    assert fixed_point(tanh, 1.0, 0.0, 1.0) == pytest.approx(0.0, abs=1e-9)
