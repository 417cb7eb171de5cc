"""Activations by name: the right torch module, the right function, clear errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gradprobe.lab.activations import (
    ACTIVATIONS,
    activation_defaults,
    check_activation,
    make_activation,
)
from gradprobe.probe.activations import activation_kind

X = torch.linspace(-6, 6, 241, dtype=torch.float64)
SELU_LAMBDA, SELU_ALPHA = 1.0507009873554805, 1.6732632423543772  # Klambauer et al. 2017

# name -> (module class, closed form phi(x) on float64 tensors)
EXPECTED = {
    "sigmoid": (nn.Sigmoid, lambda x: 1 / (1 + torch.exp(-x))),
    "tanh": (nn.Tanh, lambda x: (torch.exp(x) - torch.exp(-x)) / (torch.exp(x) + torch.exp(-x))),
    "relu": (nn.ReLU, lambda x: torch.where(x > 0, x, 0.0)),
    "leaky_relu": (nn.LeakyReLU, lambda x: torch.where(x > 0, x, 0.01 * x)),
    "elu": (nn.ELU, lambda x: torch.where(x > 0, x, torch.exp(x) - 1)),
    "selu": (
        nn.SELU,
        lambda x: SELU_LAMBDA * torch.where(x > 0, x, SELU_ALPHA * (torch.exp(x) - 1)),
    ),
    "gelu": (nn.GELU, lambda x: x * 0.5 * (1 + torch.erf(x / math.sqrt(2)))),
    "softplus": (nn.Softplus, lambda x: torch.log1p(torch.exp(x))),
    "linear": (nn.Identity, lambda x: x),
}


def test_expected_covers_every_activation():
    assert set(EXPECTED) == set(ACTIVATIONS)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_module_class_and_values_match_closed_form(name):
    cls, phi = EXPECTED[name]
    module = make_activation(name)
    assert type(module) is cls
    torch.testing.assert_close(module(X), phi(X), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("name", "params", "phi"),
    [
        ("leaky_relu", {"slope": 0.2}, lambda x: torch.where(x > 0, x, 0.2 * x)),
        ("elu", {"alpha": 0.5}, lambda x: torch.where(x > 0, x, 0.5 * (torch.exp(x) - 1))),
        ("softplus", {"beta": 2.0}, lambda x: torch.log1p(torch.exp(2 * x)) / 2),
        (
            "gelu",
            {"approximate": "tanh"},
            lambda x: 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))),
        ),
    ],
)
def test_parameters_change_the_function(name, params, phi):
    torch.testing.assert_close(make_activation(name, **params)(X), phi(X), rtol=1e-12, atol=1e-12)


def test_probe_recognises_saturating_and_dying_kinds():
    kinds = {name: activation_kind(make_activation(name)) for name in ACTIVATIONS}
    assert kinds["sigmoid"] == (True, "sigmoid")
    assert kinds["tanh"] == (True, "tanh")
    assert kinds["relu"] == (True, "relu")
    assert kinds["leaky_relu"] == (True, None)


def test_modules_are_fresh_and_not_inplace():
    a, b = make_activation("relu"), make_activation("relu")
    assert a is not b
    assert a.inplace is False
    assert make_activation("leaky_relu").inplace is False


def test_defaults_and_check():
    assert activation_defaults("leaky_relu") == {"slope": 0.01}
    assert activation_defaults("tanh") == {}
    assert check_activation("gelu") == "gelu"


def test_unknown_name_lists_allowed():
    with pytest.raises(ValueError, match=r"activation='sigmod' is not one of: sigmoid, tanh, relu"):
        make_activation("sigmod")
    with pytest.raises(ValueError, match="is not one of"):
        check_activation(None)


def test_unknown_param_lists_allowed():
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) alpha; allowed: slope"):
        make_activation("leaky_relu", alpha=0.1)
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) slope; allowed: none"):
        make_activation("tanh", slope=0.1)
    with pytest.raises(ValueError, match="approximate='fast' is not one of: none, tanh"):
        make_activation("gelu", approximate="fast")
