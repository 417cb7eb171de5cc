"""Sick optimisation and arithmetic: learning rates too large or too small, NaN and Inf."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.pathologies.case import Case, Outcome, train
from benchmarks.pathologies.data import digits, regression
from benchmarks.pathologies.models import Exp, mlp

STEPS = 50


def naive_log_softmax_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy written as log(softmax(x)): log(0) = -inf once softmax underflows."""
    return F.nll_loss(torch.log(torch.softmax(logits, dim=1)), y)


def lr_too_large_nan() -> Outcome:
    """3-layer ReLU MLP, He init, plain SGD at lr 10 (0.01..0.1 trains it)."""
    torch.manual_seed(20)
    model = mlp([64, 64, 64, 10], "relu", weight_var=2.0)
    opt = torch.optim.SGD(model.parameters(), lr=10.0)
    return train(model, opt, digits(seed=21), F.cross_entropy, STEPS)


def lr_too_large_tanh() -> Outcome:
    """3-layer tanh MLP, LeCun init, plain SGD at lr 10 (0.01..1 trains it)."""
    torch.manual_seed(20)
    model = mlp([64, 64, 64, 10], "tanh", weight_var=1.0)
    opt = torch.optim.SGD(model.parameters(), lr=10.0)
    return train(model, opt, digits(seed=21), F.cross_entropy, STEPS)


def lr_too_large_linear() -> Outcome:
    """Linear regression, SGD at lr 0.8: above 2 / lambda_max of the batch Hessian
    (~2.3 for 16 standard normal features and batch 64), so the weights oscillate with
    growing amplitude (Goodfellow et al., Deep Learning, sec. 4.3)."""
    torch.manual_seed(22)
    model = nn.Sequential(nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.8)
    return train(model, opt, regression(seed=23), F.mse_loss, STEPS)


def lr_too_small_sgd() -> Outcome:
    """3-layer ReLU MLP, He init, SGD with momentum at lr 1e-6 (1e-2 trains it)."""
    torch.manual_seed(24)
    model = mlp([64, 64, 64, 10], "relu", weight_var=2.0)
    opt = torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9)
    return train(model, opt, digits(seed=25), F.cross_entropy, STEPS)


def lr_too_small_adam() -> Outcome:
    """3-layer tanh MLP, LeCun init, Adam at lr 1e-7 (1e-3 trains it)."""
    torch.manual_seed(26)
    model = mlp([64, 64, 64, 10], "tanh", weight_var=1.0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-7)
    return train(model, opt, digits(seed=27), F.cross_entropy, STEPS)


def log_softmax_nan() -> Outcome:
    """2-layer ReLU MLP whose output layer starts 1000x too large, trained with
    log(softmax(x)): the softmax of logits hundreds apart underflows to 0."""
    torch.manual_seed(28)
    model = mlp([64, 64, 10], "relu", weight_var=2.0)
    with torch.no_grad():
        model[2].weight.mul_(1000.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    return train(model, opt, digits(seed=29), naive_log_softmax_loss, STEPS)


def exp_overflow() -> Outcome:
    """Linear -> exp -> Linear on raw pixels x 10: exp overflows float32 past 88.7."""
    torch.manual_seed(30)
    model = nn.Sequential(nn.Linear(64, 32), Exp(), nn.Linear(32, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    return train(model, opt, digits(scale=10.0, seed=31), F.cross_entropy, STEPS)


NONFINITE, DIVERGE, LARGE = "nonfinite", "loss_divergence", "update_too_large"
SMALL, PLATEAU = "update_too_small", "loss_plateau"
CASES = [
    Case("lr_too_large_nan", lr_too_large_nan, frozenset({NONFINITE, DIVERGE, LARGE}),
         "each step rewrites the weights; the loss climbs to 1e33, then NaN"),
    Case("lr_too_large_tanh", lr_too_large_tanh, frozenset({DIVERGE, LARGE, "saturation"}),
         "updates of 20-40% of the weights; the loss rises; the tanh units end saturated"),
    Case("lr_too_large_linear", lr_too_large_linear, frozenset({DIVERGE, LARGE}),
         "lr above 2 / lambda_max: the loss grows geometrically and stays finite"),
    Case("lr_too_small_sgd", lr_too_small_sgd, frozenset({SMALL, PLATEAU}),
         "even the best-fed layer moves by ~1e-6 of its norm; the loss does not move"),
    Case("lr_too_small_adam", lr_too_small_adam, frozenset({SMALL, PLATEAU}),
         "Adam steps of 1e-7 per weight; the loss does not move"),
    Case("log_softmax_nan", log_softmax_nan, frozenset({NONFINITE, "lint_unstable_log_softmax"}),
         "softmax underflows to 0 for the target class, log gives -inf, backward NaN"),
    Case("exp_overflow", exp_overflow, frozenset({NONFINITE}),
         "exp of pre-activations beyond 88.7 is inf in the forward pass"),
]  # fmt: skip
