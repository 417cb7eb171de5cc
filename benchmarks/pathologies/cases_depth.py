"""Sick along depth, and sick units: vanishing, exploding, saturated and dead."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks.pathologies.case import Case, Outcome, at_init, train
from benchmarks.pathologies.data import digits
from benchmarks.pathologies.models import bn_mlp, mlp

STEPS = 50  # 5 detail steps at the probe's default detail_every=10
PASSES = 8  # forward/backward passes of an at-init case: more than a 5-step window


def _sgd(model, lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)


def sigmoid_deep_nielsen() -> Outcome:
    """8 sigmoid layers of 30, W ~ N(0, 1/n_in), b ~ N(0, 1) (Nielsen ch. 3 and 5)."""
    torch.manual_seed(0)
    model = mlp([64] + [30] * 8 + [10], "sigmoid", weight_var=1.0, bias_std=1.0)
    return train(model, _sgd(model, 0.05), digits(seed=1), F.cross_entropy, STEPS)


def sigmoid_deep_default() -> Outcome:
    """8 sigmoid layers of 64 with torch's default init (variance 1 / (3 n_in))."""
    torch.manual_seed(1)
    model = mlp([64] + [64] * 8 + [10], "sigmoid")
    return train(model, _sgd(model, 0.05), digits(seed=2), F.cross_entropy, STEPS)


def tanh_small_init() -> Outcome:
    """10 tanh layers of 64, W ~ N(0, 0.25 / n_in): chi = 0.25 per layer (THEORY.md)."""
    torch.manual_seed(2)
    model = mlp([64] + [64] * 10 + [10], "tanh", weight_var=0.25)
    return train(model, _sgd(model, 0.01), digits(seed=3), F.cross_entropy, STEPS)


def tanh_deep_lecun() -> Outcome:
    """50 tanh layers of 64, sigma_w^2 = 1, sigma_b^2 = 0.05: ln chi = -0.326 per layer."""
    torch.manual_seed(3)
    model = mlp([64] + [64] * 50 + [10], "tanh", weight_var=1.0, bias_std=0.05**0.5)
    return train(model, _sgd(model, 0.05), digits(seed=4), F.cross_entropy, STEPS)


def relu_large_init() -> Outcome:
    """16 ReLU layers of 64 at init, W ~ N(0, 6 / n_in): 3x He, gain sqrt(3) per layer."""
    torch.manual_seed(4)
    model = mlp([64] + [64] * 16 + [10], "relu", weight_var=6.0)
    return at_init(model, digits(seed=5), F.cross_entropy, PASSES)


def relu_bn_50() -> Outcome:
    """50 blocks Linear -> BatchNorm1d -> ReLU at init, batch 64 (Yang et al. 2019)."""
    torch.manual_seed(5)
    model = bn_mlp(64, 64, 50, 10)
    return at_init(model, digits(seed=6), F.cross_entropy, PASSES)


def tanh_chaotic() -> Outcome:
    """20 tanh layers of 64 at init, sigma_w^2 = 25: deep in the chaotic phase, chi > 1."""
    torch.manual_seed(6)
    model = mlp([64] + [64] * 20 + [10], "tanh", weight_var=25.0)
    return at_init(model, digits(seed=7), F.cross_entropy, PASSES)


def relu_dead_bias() -> Outcome:
    """4 ReLU layers of 64, He init, the first layer's bias at -4: most of its units
    never fire on standardised inputs."""
    torch.manual_seed(7)
    model = mlp([64] + [64] * 4 + [10], "relu", weight_var=2.0)
    torch.nn.init.constant_(model[0].bias, -4.0)
    return train(model, _sgd(model, 0.05), digits(seed=8), F.cross_entropy, STEPS)


def relu_dead_after_spike() -> Outcome:
    """4 ReLU layers of 64, He init; one plain SGD step at lr 10 (a learning-rate spike)
    before the probe attaches, then 50 steps at lr 0.01 with momentum."""
    torch.manual_seed(11)
    model = mlp([64] + [64] * 4 + [10], "relu", weight_var=2.0)
    data = digits(seed=12)
    x, y = data.batch(10_000)  # a batch the watched run does not see
    F.cross_entropy(model(x), y).backward()
    torch.optim.SGD(model.parameters(), lr=10.0).step()
    return train(model, _sgd(model, 0.01), data, F.cross_entropy, STEPS)


def sigmoid_inputs_x100() -> Outcome:
    """3 sigmoid layers of 30 on raw pixels x 100 (0..1600): the first layer is pinned."""
    torch.manual_seed(8)
    model = mlp([64, 30, 30, 10], "sigmoid")
    return train(model, _sgd(model, 0.05), digits(scale=100.0, seed=9), F.cross_entropy, STEPS)


def tanh_inputs_x100() -> Outcome:
    """3 tanh layers of 30 on raw pixels x 100."""
    torch.manual_seed(9)
    model = mlp([64, 30, 30, 10], "tanh")
    return train(model, _sgd(model, 0.01), digits(scale=100.0, seed=10), F.cross_entropy, STEPS)


def tanh_inputs_x1() -> Outcome:
    """2 tanh layers of 64 on raw pixels (0..16, not standardised)."""
    torch.manual_seed(10)
    model = mlp([64, 64, 10], "tanh")
    return train(model, _sgd(model, 0.05), digits(scale=1.0, seed=11), F.cross_entropy, STEPS)


VANISH, EXPLODE, PLATEAU = "vanishing_gradient", "exploding_gradient", "loss_plateau"
SAT, DEAD = "saturation", "dead_units"
CASES = [
    Case("sigmoid_deep_nielsen", sigmoid_deep_nielsen, frozenset({VANISH, PLATEAU}),
         "x0.2 per layer over 8 layers, units unsaturated; loss flat at ln 10 after step 6"),
    Case("sigmoid_deep_default", sigmoid_deep_default, frozenset({VANISH, PLATEAU}),
         "x0.13 per layer over 8 layers; loss flat at ln 10"),
    Case("tanh_small_init", tanh_small_init, frozenset({VANISH, PLATEAU}),
         "sigma_w^2 = 0.25: ~x0.5 per layer over 10 layers; loss flat at ln 10"),
    Case("tanh_deep_lecun", tanh_deep_lecun, frozenset({VANISH, PLATEAU}),
         "ln chi = -0.326 per layer over 50 layers; loss flat at ln 10"),
    Case("relu_large_init", relu_large_init, frozenset({EXPLODE}),
         "sigma_w^2 = 6 with ReLU: chi = 3 per layer over 16 layers"),
    Case("relu_bn_50", relu_bn_50, frozenset({EXPLODE}),
         "BatchNorm + ReLU explodes at init, ~+0.38 per layer (THEORY.md)"),
    Case("tanh_chaotic", tanh_chaotic, frozenset({EXPLODE, SAT}),
         "sigma_w^2 = 25: chi > 1 and 2/3 of the units in the tails"),
    Case("relu_dead_bias", relu_dead_bias, frozenset({DEAD}),
         "bias -4 keeps 3/4 of the first layer at zero for every input; loss falls slowly",
         frozenset({PLATEAU})),
    Case("relu_dead_after_spike", relu_dead_after_spike, frozenset({DEAD}),
         "one step at lr 10 left 3/4 of a layer below zero for every input"),
    Case("sigmoid_inputs_x100", sigmoid_inputs_x100, frozenset({SAT, VANISH, PLATEAU}),
         "inputs up to 1600 pin the first layer's sigmoids (sigmoid' ~ 0); loss flat"),
    Case("tanh_inputs_x100", tanh_inputs_x100, frozenset({SAT, VANISH}),
         "inputs up to 1600 pin the first layer's tanh units; loss falls slowly",
         frozenset({PLATEAU})),
    Case("tanh_inputs_x1", tanh_inputs_x1, frozenset({SAT}),
         "unnormalised pixels 0..16 saturate most first-layer units; gradient still flows"),
]  # fmt: skip
