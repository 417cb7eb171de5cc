"""Optimizers by name: SGD with momentum and Nielsen-style L2, and Adam.

Nielsen's regularised cost (NNDL ch. 3, "Regularization") is C = C0 + lambda/(2n) sum_w w^2,
n the size of the training set, with weights only (not biases) in the sum. Its gradient
descent step is

    w <- (1 - eta lambda / n) w - eta dC0/dw,        b <- b - eta dC0/db,

which is torch's `weight_decay = lambda / n` (torch adds weight_decay * w to the gradient)
on the weights alone. Biases and norm parameters (every parameter with dim <= 1) go in a
second group without decay. Nielsen's momentum, v <- mu v - eta grad C, w <- w + v, equals
torch's buf <- mu buf + grad C, w <- w - eta buf (v = -eta buf) at a fixed eta.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn

OPTIMIZERS: tuple[str, ...] = ("sgd", "adam")


def _check(lr: float, momentum: float, l2: float, n_train: int) -> None:
    if isinstance(lr, bool) or not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr={lr!r} must be a finite number > 0")
    if isinstance(momentum, bool) or not (isinstance(momentum, (int, float)) and 0 <= momentum < 1):
        raise ValueError(f"momentum={momentum!r} must be in [0, 1)")
    if isinstance(l2, bool) or not (isinstance(l2, (int, float)) and math.isfinite(l2) and l2 >= 0):
        raise ValueError(f"l2={l2!r} must be a finite number >= 0")
    if isinstance(n_train, bool) or not isinstance(n_train, numbers.Integral) or n_train < 1:
        raise ValueError(f"n_train={n_train!r} must be an int >= 1 (the training-set size)")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two parameter groups: weights (dim >= 2) decayed, the rest (biases, norms) not.

    Args:
        model: the network.
        weight_decay: torch's weight_decay for the weights (lambda / n).

    Returns:
        Non-empty groups, in order weights then biases, each a dict with "params",
        "weight_decay" and "name".
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{type(model).__name__} has no trainable parameters")
    groups = [
        {"name": "weights", "params": [p for p in params if p.dim() > 1],
         "weight_decay": weight_decay},
        {"name": "biases", "params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0},
    ]  # fmt: skip
    return [g for g in groups if g["params"]]


def make_optimizer(
    name: str,
    model: nn.Module,
    *,
    lr: float,
    momentum: float = 0.0,
    l2: float = 0.0,
    n_train: int,
    nesterov: bool = False,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> torch.optim.Optimizer:
    """The optimizer called `name` over `model`'s trainable parameters.

    Args:
        name: "sgd" or "adam".
        model: the network.
        lr: learning rate eta (> 0).
        momentum: SGD momentum mu in [0, 1); must be 0 for adam (use `betas`).
        l2: Nielsen's lambda (>= 0); weights decay by lambda / n_train, biases not at all.
            For adam the decay is coupled (added to the gradient), as in torch.optim.Adam.
        n_train: training-set size n (>= 1).
        nesterov: Nesterov momentum (sgd only).
        betas: Adam's (beta1, beta2); defaults of Kingma & Ba 2014.
        eps: Adam's epsilon; Kingma & Ba 2014's default.

    Returns:
        A torch.optim.SGD or torch.optim.Adam with the two parameter groups of
        `param_groups`.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer={name!r} is not one of: {', '.join(OPTIMIZERS)}")
    _check(lr, momentum, l2, n_train)
    groups = param_groups(model, l2 / n_train)
    if name == "sgd":
        if nesterov and momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov)
    if momentum != 0:
        raise ValueError(f"momentum={momentum!r} applies to sgd only; adam takes betas={betas}")
    return torch.optim.Adam(groups, lr=lr, betas=betas, eps=eps)
