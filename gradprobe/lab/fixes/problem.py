"""`Problem`: what a fix trial trains (the model factory, the data, the loss, the optimizer),
bundled so a worker process can rebuild it, and the reference loss all trials are
compared on."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# The default optimizer: SGD, lr 0.01, momentum 0.9 (the benchmark of pathologies' own
# setting; Sutskever et al. 2013 for momentum 0.9).
DEFAULT_LR, DEFAULT_MOMENTUM = 0.01, 0.9
_TINY = 1e-30  # keeps log(p) finite for a probability that underflowed to 0
# seed -> batch stream: a prime stride so (seed, step) pairs never share a stream
_STRIDE = 1_000_003


def default_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    """SGD with lr 0.01 and momentum 0.9 over every parameter of `model`."""
    return torch.optim.SGD(model.parameters(), lr=DEFAULT_LR, momentum=DEFAULT_MOMENTUM)


def make_optimizer(optimizer: Callable, model: nn.Module) -> torch.optim.Optimizer:
    """`optimizer(model)`, or `optimizer(model.parameters())` for an Optimizer class or a
    functools.partial of one (e.g. partial(torch.optim.Adam, lr=1e-3))."""
    target = optimizer.func if isinstance(optimizer, functools.partial) else optimizer
    takes_params = isinstance(target, type) and issubclass(target, torch.optim.Optimizer)
    opt = optimizer(model.parameters() if takes_params else model)
    if not isinstance(opt, torch.optim.Optimizer):
        raise TypeError(f"optimizer(model) must return a torch Optimizer; got {type(opt).__name__}")
    return opt


@dataclass(frozen=True)
class Problem:
    """A training problem.

    Attributes:
        build_model: factory; called with the plan's options as keywords.
        data: an object with .batch(step) -> (x, y), a callable step -> (x, y), or a pair
            of tensors (x, y) of shape (n, ...) to draw seeded mini-batches from.
        loss_fn: loss_fn(output, y) -> scalar tensor.
        optimizer: model -> Optimizer, or an Optimizer class / partial over parameters.
        batch_size: mini-batch size for the (x, y) form.
    """

    build_model: Callable[..., nn.Module]
    data: Any
    loss_fn: Callable[[Tensor, Any], Tensor]
    optimizer: Callable = default_optimizer
    batch_size: int = 64

    def __post_init__(self) -> None:
        if not callable(self.build_model):
            raise TypeError(f"build_model must be callable; got {type(self.build_model).__name__}")
        if not callable(self.loss_fn):
            raise TypeError(f"loss_fn must be callable; got {type(self.loss_fn).__name__}")
        if not _is_data(self.data):
            raise TypeError(
                "data must have .batch(step), be a callable step -> (x, y), or be a pair of "
                f"tensors (x, y); got {type(self.data).__name__}"
            )
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int):
            raise TypeError(f"batch_size={self.batch_size!r} must be an int >= 1")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size!r} must be an int >= 1")

    def batch(self, step: int, seed: int) -> tuple[Any, Any]:
        """The mini-batch of `step` for the trial of `seed`."""
        data = self.data
        if hasattr(data, "batch"):
            return data.batch(step)
        if callable(data):
            return data(step)
        x, y = data
        g = torch.Generator().manual_seed(seed * _STRIDE + step)
        idx = torch.randint(0, len(x), (min(self.batch_size, len(x)),), generator=g)
        return x[idx], y[idx]

    def __repr__(self) -> str:
        name = getattr(self.build_model, "__name__", type(self.build_model).__name__)
        return f"Problem(build_model={name}, data={type(self.data).__name__})"


def _is_data(data: Any) -> bool:
    if hasattr(data, "batch") or callable(data):
        return True
    return (
        isinstance(data, (tuple, list))
        and len(data) == 2
        and all(isinstance(t, Tensor) for t in data)
        and len(data[0]) == len(data[1]) > 0
    )


def class_log_probs(output: Tensor, head_type: str | None) -> Tensor:
    """Log class probabilities (B, C) from an output of shape (B, C), read as its head
    makes it: probabilities (Softmax), log-probabilities (LogSoftmax), independent
    sigmoids (normalised to sum 1) or logits (no head)."""
    if head_type == "LogSoftmax":
        return output
    if head_type == "Softmax":
        return output.clamp_min(_TINY).log()
    if head_type == "Sigmoid":
        p = output.clamp_min(_TINY)
        return (p / p.sum(dim=-1, keepdim=True)).log()
    return F.log_softmax(output, dim=-1)


def class_nll(output: Tensor, y: Tensor, head_type: str | None) -> Tensor:
    """-log p(true class), mean over the batch: the yardstick shared by every trial of a
    classification problem, whatever loss each trains with. `y`: labels (B,) or one-hot
    rows (B, C)."""
    log_p = class_log_probs(output, head_type)
    labels = y.argmax(dim=-1) if y.dim() == output.dim() else y
    return F.nll_loss(log_p.flatten(0, -2), labels.flatten().long())
