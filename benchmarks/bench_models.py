"""The models of the overhead benchmarks, each with the seeded batches it trains on.

Sizes follow issue 8: an MLP 784-1000-750-500-10 at batch 100 (large matrices), MLPs of
width 32 at depths 16-1024 (per-layer cost), a 4-layer Transformer encoder of width 256
and an LSTM over 200 time steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

N_BATCHES = 8  # distinct batches cycled through: enough that no step reuses a cached result


def mlp(sizes: list[int], act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Linear layers of the given widths with `act` between them (none after the last)."""
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), act()]
    return nn.Sequential(*layers[:-1])


class Encoder(nn.Module):
    """nn.TransformerEncoder (post-norm, no dropout) and a linear head on the mean token."""

    def __init__(self, d: int = 256, n_layers: int = 4, n_classes: int = 10) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(d, 4, 4 * d, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.head = nn.Linear(d, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (B, T, d)
        return self.head(self.encoder(x).mean(1))


class Recurrent(nn.Module):
    """nn.LSTM and a linear head on the last time step."""

    def __init__(self, n_in: int = 32, hidden: int = 128, n_classes: int = 10) -> None:
        super().__init__()
        self.lstm = nn.LSTM(n_in, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (B, T, n_in)
        return self.head(self.lstm(x)[0][:, -1])


@dataclass(frozen=True)
class Bench:
    """A model builder and the shape of its input batches (classification targets)."""

    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    n_classes: int

    def batches(self, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(seed)
        n = self.input_shape[0]
        return [
            (
                torch.randn(*self.input_shape, generator=g),
                torch.randint(0, self.n_classes, (n,), generator=g),
            )
            for _ in range(N_BATCHES)
        ]


def deep_mlp(depth: int, width: int = 32, batch: int = 32) -> Bench:
    """`depth` Linear layers of width `width`, ReLU between them."""
    return Bench(lambda: mlp([width] * (depth + 1)), (batch, width), width)


MODELS: dict[str, Bench] = {
    "MLP 784-1000-750-500-10, batch 100": Bench(
        lambda: mlp([784, 1000, 750, 500, 10]), (100, 784), 10
    ),
    "MLP 256 layers of width 32, batch 32": deep_mlp(256),
    "Transformer encoder 4 x d=256, batch 16 x 32 tokens": Bench(Encoder, (16, 32, 256), 10),
    "LSTM 32->128 over 200 steps, batch 16": Bench(Recurrent, (16, 200, 32), 10),
}

DEPTHS = (16, 64, 256, 1024)
