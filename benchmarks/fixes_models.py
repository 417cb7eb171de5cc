"""Model factories for the fix benchmark: each rebuilds one case of the pathology benchmark
(same modules, same init rule) when called with no keyword, and takes
the options a user's factory may offer to the architecture remedies: `activation`, `norm`
and `residual_alpha`. Frozen dataclasses, so worker processes can unpickle them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.pathologies.data import digits
from benchmarks.pathologies.models import Exp, init_linear
from benchmarks.pathologies.seqmodels import SeqClassifier, set_recurrent
from gradprobe.lab.activations import make_activation

HEADS = {"softmax": lambda: nn.Softmax(dim=1), "log_softmax": lambda: nn.LogSoftmax(dim=1),
         "sigmoid": nn.Sigmoid}  # fmt: skip


def _activation(name: str) -> nn.Module:
    return Exp() if name == "exp" else make_activation(name)


class Residual(nn.Module):
    """h + alpha * block(h)."""

    def __init__(self, block: nn.Module, alpha: float) -> None:
        super().__init__()
        self.block, self.alpha = block, float(alpha)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.alpha * self.block(h)


@dataclass(frozen=True)
class Net:
    """Linear layers of `sizes`, [norm], activation after each but the last, [head].

    Attributes mirror benchmarks.pathologies.models.mlp / bn_mlp: weight_var None keeps
    torch's default init; "he" (bn_mlp's kaiming_normal_) otherwise a sigma_w^2.
    first_bias sets the first layer's bias (relu_dead_bias); last_scale multiplies the
    output layer's weights (log_softmax_nan); spike_seed runs one SGD step at lr 10 on a
    batch of digits (relu_dead_after_spike).
    """

    sizes: tuple[int, ...]
    activation: str
    weight_var: float | str | None = None
    bias_std: float = 0.0
    bias: bool = True
    norm: str | None = None
    head: str | None = None
    first_bias: float | None = None
    last_scale: float | None = None
    spike_seed: int | None = None

    def __call__(self, activation=None, norm=None, residual_alpha=None) -> nn.Module:
        act, norm = activation or self.activation, norm or self.norm
        layers = []
        pairs = list(zip(self.sizes[:-1], self.sizes[1:]))
        for i, (n_in, n_out) in enumerate(pairs):
            lin = self._linear(n_in, n_out, last=i == len(pairs) - 1)
            if i == len(pairs) - 1:
                layers.append(lin)
                break
            block = [lin, *([_norm(norm, n_out)] if norm else []), _activation(act)]
            if residual_alpha is not None and n_in == n_out:
                layers.append(Residual(nn.Sequential(*block), residual_alpha))
            else:
                layers += block
        if self.head is not None:
            layers.append(HEADS[self.head]())
        model = nn.Sequential(*layers)
        self._after(model)
        return model

    def _linear(self, n_in: int, n_out: int, last: bool) -> nn.Linear:
        lin = nn.Linear(n_in, n_out, bias=self.bias or last)
        if self.weight_var == "he" and not last:
            nn.init.kaiming_normal_(lin.weight, nonlinearity="relu")
        elif self.weight_var != "he":
            init_linear(lin, self.weight_var, self.bias_std)
        return lin

    @torch.no_grad()
    def _after(self, model: nn.Sequential) -> None:
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if self.first_bias is not None:
            linears[0].bias.fill_(self.first_bias)
        if self.last_scale is not None:
            linears[-1].weight.mul_(self.last_scale)
        if self.spike_seed is not None:  # a learning-rate spike before training
            with torch.enable_grad():
                x, y = digits(seed=self.spike_seed).batch(10_000)
                F.cross_entropy(model(x), y).backward()
            for p in model.parameters():
                p -= 10.0 * p.grad
                p.grad = None


def _norm(kind: str, width: int) -> nn.Module:
    return nn.BatchNorm1d(width) if kind == "batch" else nn.LayerNorm(width)


@dataclass(frozen=True)
class Seq:
    """A one-layer recurrent classifier with W_hh = radius x orthogonal (cases_time.py)."""

    cell: str
    radius: float
    forget_bias: float = 0.0

    def __call__(self) -> nn.Module:
        model = SeqClassifier(self.cell, 8, 32, 2, per_step=False)
        set_recurrent(model.rnn, self.radius, self.forget_bias)
        return model


@dataclass(frozen=True)
class Linear:
    """Linear regression, one nn.Linear (lr_too_large_linear)."""

    n_in: int = 16

    def __call__(self) -> nn.Module:
        return nn.Sequential(nn.Linear(self.n_in, 1))
