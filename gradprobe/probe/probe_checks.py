"""Checks of the arguments of `Probe` (gradprobe.watch): each bad one says what was wrong."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

DELTA_MODES = ("auto", "hook")


def check_model(model: Any) -> None:
    """model must be an nn.Module that owns at least one parameter."""
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"watch() needs a torch.nn.Module as model; got {type(model).__name__} ({model!r:.60})"
        )
    if next(model.parameters(), None) is None:
        raise ValueError(
            f"model {type(model).__name__} has no parameters, so there is no gradient to "
            "watch; pass the module that owns the trainable layers"
        )


def check_optimizer(optimizer: Any, model: nn.Module) -> None:
    """optimizer must be None or a torch Optimizer holding some of model's parameters."""
    if optimizer is None:
        return
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"optimizer must be a torch.optim.Optimizer or None; got {type(optimizer).__name__}"
        )
    mine = {id(p) for p in model.parameters()}
    if not any(id(p) in mine for g in optimizer.param_groups for p in g["params"]):
        raise ValueError("optimizer holds none of the model's parameters: is it another model's?")


def check_options(delta: str, flush_every: Any, flush_secs: Any) -> None:
    """delta one of DELTA_MODES, flush_every a positive int, flush_secs positive seconds."""
    if delta not in DELTA_MODES:
        raise ValueError(f"delta={delta!r} is not one of: {', '.join(DELTA_MODES)}")
    if isinstance(flush_every, bool) or not isinstance(flush_every, int) or flush_every < 1:
        raise ValueError(f"flush_every={flush_every!r} must be a positive int")
    number = isinstance(flush_secs, (int, float)) and not isinstance(flush_secs, bool)
    if not number or not math.isfinite(flush_secs) or flush_secs <= 0:
        raise ValueError(f"flush_secs={flush_secs!r} must be a positive number of seconds")
