"""Small model builders for the cases: plain torch, the stock nn activation modules (which
the probe recognises to count saturation and dead units), explicit initialisations.
"""

from __future__ import annotations

import math

import torch
from torch import nn

ACTIVATIONS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}


def init_linear(
    lin: nn.Linear, weight_var: float | None, bias_std: float = 0.0, bias: float = 0.0
) -> None:
    """W ~ N(0, weight_var / fan_in), b ~ N(bias, bias_std^2); weight_var None keeps torch's
    default (uniform, variance 1 / (3 fan_in)) and its bias."""
    if weight_var is None:
        return
    nn.init.normal_(lin.weight, 0.0, math.sqrt(weight_var / lin.in_features))
    if lin.bias is None:
        return
    if bias_std > 0:
        nn.init.normal_(lin.bias, bias, bias_std)
    else:
        nn.init.constant_(lin.bias, bias)


def mlp(
    sizes: list[int],
    activation: str,
    weight_var: float | None = None,
    bias_std: float = 0.0,
    bias: float = 0.0,
    head: nn.Module | None = None,
) -> nn.Sequential:
    """Linear layers of the given sizes, an activation module after each but the last.

    Args:
        sizes: [n_in, hidden..., n_out].
        activation: "sigmoid", "tanh" or "relu".
        weight_var: sigma_w^2 of W ~ N(0, sigma_w^2 / fan_in) (1: LeCun / Nielsen, 2: He);
            None keeps torch's default init.
        bias_std, bias: b ~ N(bias, bias_std^2) for every layer (used when weight_var is set).
        head: a module appended after the last layer (nn.Softmax for the lint cases).
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation={activation!r} is not one of: {', '.join(ACTIVATIONS)}")
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        lin = nn.Linear(n_in, n_out)
        init_linear(lin, weight_var, bias_std, bias)
        layers += [lin, ACTIVATIONS[activation]()]
    layers.pop()
    return nn.Sequential(*layers, *([head] if head is not None else []))


def bn_mlp(n_in: int, width: int, depth: int, n_out: int) -> nn.Sequential:
    """`depth` blocks Linear (He init, no bias) -> BatchNorm1d -> ReLU, then a Linear head."""
    layers: list[nn.Module] = []
    for i in range(depth):
        lin = nn.Linear(n_in if i == 0 else width, width, bias=False)
        nn.init.kaiming_normal_(lin.weight, nonlinearity="relu")
        layers += [lin, nn.BatchNorm1d(width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, n_out))


class ResidualMLP(nn.Module):
    """x <- x + alpha * W2 relu(W1 x) per block, He init, alpha = 1 / sqrt(n_blocks) so the
    backward gain (1 + alpha^2 chi_F)^L stays bounded (THEORY.md, residual nets)."""

    def __init__(self, n_in: int, width: int, n_blocks: int, n_out: int) -> None:
        super().__init__()
        self.inp = nn.Linear(n_in, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width))
            for _ in range(n_blocks)
        )
        for block in self.blocks:
            for lin in (block[0], block[2]):
                init_linear(lin, 2.0)
        self.out = nn.Linear(width, n_out)
        self.alpha = 1.0 / math.sqrt(n_blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        for block in self.blocks:
            h = h + self.alpha * block(h)
        return self.out(h)


def small_cnn(batch_norm: bool = False) -> nn.Sequential:
    """Two 3x3 conv layers (16, 32 channels, He init) on (1, 8, 8) images, ReLU, one 2x2
    max-pool, a Linear head on the flattened (32, 4, 4) features."""
    norm = [nn.BatchNorm2d(16)] if batch_norm else []
    norm2 = [nn.BatchNorm2d(32)] if batch_norm else []
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), *norm, nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), *norm2, nn.ReLU(),
        nn.Flatten(), nn.Linear(512, 10),
    )  # fmt: skip
    for conv in (m for m in model if isinstance(m, nn.Conv2d)):
        nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
        nn.init.zeros_(conv.bias)
    return model


class Exp(nn.Module):
    """exp as an activation: overflows to inf in float32 once its input passes ~88.7."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(x)
