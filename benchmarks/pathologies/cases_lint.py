"""Sick model + loss pairings that the static lints find: MSE on class probabilities,
a softmax before CrossEntropyLoss, log(softmax(x)) written out."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.pathologies.case import Case, Outcome, train
from benchmarks.pathologies.cases_training import naive_log_softmax_loss
from benchmarks.pathologies.data import digits
from benchmarks.pathologies.models import mlp

STEPS = 50


def mse_one_hot(probs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Quadratic cost against one-hot class targets (Nielsen ch. 1)."""
    return F.mse_loss(probs, F.one_hot(y, probs.shape[1]).to(probs.dtype))


def _run(model: nn.Module, lr: float, loss_fn, seed: int) -> Outcome:
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    return train(model, opt, digits(seed=seed), loss_fn, STEPS)


def mse_softmax() -> Outcome:
    """2-layer ReLU MLP ending in nn.Softmax, MSE against one-hot labels."""
    torch.manual_seed(40)
    return _run(mlp([64, 64, 10], "relu", 2.0, head=nn.Softmax(dim=1)), 0.5, mse_one_hot, 41)


def mse_sigmoid() -> Outcome:
    """Nielsen's ch. 1 network: sigmoid layers, sigmoid outputs, quadratic cost."""
    torch.manual_seed(42)
    return _run(mlp([64, 30, 10], "sigmoid", 1.0, head=nn.Sigmoid()), 1.0, mse_one_hot, 43)


def double_softmax() -> Outcome:
    """2-layer ReLU MLP ending in nn.Softmax, then F.cross_entropy (a second softmax)."""
    torch.manual_seed(44)
    return _run(mlp([64, 64, 10], "relu", 2.0, head=nn.Softmax(dim=1)), 0.1, F.cross_entropy, 45)


def log_softmax_then_ce() -> Outcome:
    """nn.LogSoftmax then F.cross_entropy: log_softmax is idempotent, so this trains as
    usual, but the model's output is not the logits the loss expects."""
    torch.manual_seed(46)
    model = mlp([64, 64, 10], "relu", 2.0, head=nn.LogSoftmax(dim=1))
    return _run(model, 0.01, F.cross_entropy, 47)


def log_softmax_explicit() -> Outcome:
    """A normal MLP trained with log(softmax(x)) written out; logits stay small here."""
    torch.manual_seed(48)
    return _run(mlp([64, 64, 10], "relu", 2.0), 0.01, naive_log_softmax_loss, 49)


MSE, DOUBLE, LOG_SM = (
    "lint_mse_for_classification",
    "lint_double_softmax",
    ("lint_unstable_log_softmax"),
)
CASES = [
    Case("mse_softmax", mse_softmax, frozenset({MSE}),
         "softmax probabilities regressed onto one-hot targets"),
    Case("mse_sigmoid", mse_sigmoid, frozenset({MSE, "saturation"}),
         "sigmoid outputs regressed onto one-hot targets; the outputs saturate toward 0",
         frozenset({"loss_plateau"})),
    Case("double_softmax", double_softmax, frozenset({DOUBLE}),
         "cross_entropy applies a second softmax to probabilities"),
    Case("log_softmax_then_ce", log_softmax_then_ce, frozenset({DOUBLE}),
         "cross_entropy after nn.LogSoftmax"),
    Case("log_softmax_explicit", log_softmax_explicit, frozenset({LOG_SM}),
         "torch.log(torch.softmax(x)) in the loss; finite here"),
]  # fmt: skip
