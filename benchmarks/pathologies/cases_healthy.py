"""Healthy models, sensibly initialised and trained: they must get no finding at all."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks.pathologies.case import Case, Outcome, train
from benchmarks.pathologies.data import (
    digit_images,
    digit_rows,
    digits,
    running_sum_task,
)
from benchmarks.pathologies.models import ResidualMLP, mlp, small_cnn
from benchmarks.pathologies.seqmodels import SeqClassifier, TransformerClassifier, set_recurrent

STEPS = 50


def per_step_ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy at every time step: logits (B, T, C), y (B, T)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def _sgd(model, lr: float, seed: int, data=None) -> Outcome:
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    return train(model, opt, data or digits(seed=seed), F.cross_entropy, STEPS)


def relu_he_mlp() -> Outcome:
    """5 ReLU layers of 64, He init (sigma_w^2 = 2: chi = 1)."""
    torch.manual_seed(60)
    return _sgd(mlp([64] + [64] * 5 + [10], "relu", weight_var=2.0), 0.01, 61)


def residual_mlp() -> Outcome:
    """10 residual ReLU blocks of width 64, alpha = 1 / sqrt(10)."""
    torch.manual_seed(62)
    return _sgd(ResidualMLP(64, 64, 10, 10), 0.01, 63)


def small_cnn_digits() -> Outcome:
    """Two conv layers and a head on 8x8 digit images, torch's default init."""
    torch.manual_seed(64)
    return _sgd(small_cnn(), 0.05, 65, digit_images(seed=65))


def bn_cnn_digits() -> Outcome:
    """The same CNN with BatchNorm after each conv."""
    torch.manual_seed(66)
    return _sgd(small_cnn(batch_norm=True), 0.05, 67, digit_images(seed=67))


def shallow_tanh() -> Outcome:
    """One hidden tanh layer of 64, LeCun init."""
    torch.manual_seed(68)
    return _sgd(mlp([64, 64, 10], "tanh", weight_var=1.0), 0.01, 69)


def shallow_sigmoid() -> Outcome:
    """One hidden sigmoid layer of 30, Nielsen's init (W ~ N(0, 1/n_in), b ~ N(0, 1))."""
    torch.manual_seed(70)
    return _sgd(mlp([64, 30, 10], "sigmoid", weight_var=1.0, bias_std=1.0), 0.1, 71)


def logistic_regression() -> Outcome:
    """A single Linear layer: nothing to vanish through."""
    torch.manual_seed(72)
    return _sgd(mlp([64, 10], "relu"), 0.01, 73)


def _sequence(cell: str, seed: int, forget_bias: float = 0.0) -> Outcome:
    torch.manual_seed(seed)
    model = SeqClassifier(cell, 8, 32, 2, per_step=True)
    set_recurrent(model.rnn, 1.0, forget_bias)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    return train(model, opt, running_sum_task(20, seed=seed), per_step_ce, STEPS)


def lstm_sensible() -> Outcome:
    """LSTM, orthogonal W_hh, forget bias 1 (Jozefowicz et al. 2015), a target per step."""
    return _sequence("lstm", 74, forget_bias=1.0)


def gru_sensible() -> Outcome:
    """GRU, orthogonal W_hh, a target per step."""
    return _sequence("gru", 75)


def transformer_encoder() -> Outcome:
    """2-layer pre-norm nn.TransformerEncoder, d = 32, on digits read as 8 rows."""
    torch.manual_seed(76)
    model = TransformerClassifier(8, 8, 10)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    return train(model, opt, digit_rows(seed=77), F.cross_entropy, STEPS)


CASES = [
    Case(name, build, frozenset(), "healthy: " + (build.__doc__ or "").split("\n")[0])
    for name, build in [
        ("relu_he_mlp", relu_he_mlp),
        ("residual_mlp", residual_mlp),
        ("small_cnn", small_cnn_digits),
        ("bn_cnn", bn_cnn_digits),
        ("shallow_tanh", shallow_tanh),
        ("shallow_sigmoid", shallow_sigmoid),
        ("logistic_regression", logistic_regression),
        ("lstm_sensible", lstm_sensible),
        ("gru_sensible", gru_sensible),
        ("transformer_encoder", transformer_encoder),
    ]
]
