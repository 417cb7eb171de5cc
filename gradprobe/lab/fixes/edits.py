"""Edits of a built model that work on any nn.Module: re-initialisation (a named rule, the
critical sigma_w^2, or LSUV's data-driven rescaling), the LSTM forget-gate bias, and
removing a probability head so the model returns logits.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from gradprobe.lab.init import init_model_

# activation module type -> the lab's activation name (gradprobe.lab.activations)
_ACTIVATION_TYPES = {
    nn.Sigmoid: "sigmoid",
    nn.Tanh: "tanh",
    nn.ReLU: "relu",
    nn.LeakyReLU: "leaky_relu",
    nn.ELU: "elu",
    nn.SELU: "selu",
    nn.GELU: "gelu",
    nn.Softplus: "softplus",
}
HEADS = ("Softmax", "LogSoftmax", "Sigmoid")  # probability heads a loss change removes
_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
# LSUV (Mishkin & Matas 2016, arXiv:1511.06422, Algorithm 1): tolerance on Var = 1 and
# the most rescaling rounds per layer, the paper's Tol_var = 0.1 and T_max = 10.
LSUV_TOL = 0.1
LSUV_ROUNDS = 10


def hidden_activation(model: nn.Module) -> str | None:
    """The lab name of the model's most common hidden activation module, or None.

    A probability head (the last module, when it is a Sigmoid) is not counted; an
    nn.RNN counts as its nonlinearity.
    """
    counts: dict[str, int] = {}
    modules = list(model.modules())
    for i, module in enumerate(modules):
        name = _ACTIVATION_TYPES.get(type(module))
        if isinstance(module, nn.RNN):
            name = module.nonlinearity
        if name is None or (i == len(modules) - 1 and isinstance(module, nn.Sigmoid)):
            continue
        counts[name] = counts.get(name, 0) + 1
    return max(counts, key=lambda k: (counts[k], k)) if counts else None


def count_layers(model: nn.Module) -> int:
    """The number of Linear / Conv / recurrent layers: the depth a residual scale uses."""
    return sum(isinstance(m, (*_LAYERS, nn.RNNBase)) for m in model.modules())


def norm_kinds(model: nn.Module) -> frozenset[str]:
    """The normalisations the model holds: "batch" (BatchNorm*d), "layer" (LayerNorm)."""
    kinds = set()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            kinds.add("batch")
        elif isinstance(m, nn.LayerNorm):
            kinds.add("layer")
    return frozenset(kinds)


def has_lstm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.LSTM) for m in model.modules())


def has_tanh_rnn(model: nn.Module) -> bool:
    return any(isinstance(m, nn.RNN) and m.nonlinearity == "tanh" for m in model.modules())


def reinit_(model: nn.Module, rule: str, value: float, generator: torch.Generator, batch) -> None:
    """Re-initialise every Linear / Conv / RNN layer of `model` in place, biases to zero.

    Args:
        rule: an initialiser of gradprobe.lab.init (its `value` is the gain), "critical"
            (W ~ N(0, value / fan_in), value = sigma_w^2 on the edge of chaos), "lsuv"
            (orthogonal, then each layer scaled to output variance `value` on `batch`) or
            "rnn_isometry" (every layer orthogonal at gain `value`; each tanh nn.RNN's W_hh
            orthogonal at gain 1 and its W_ih scaled so Var(h) = 1/T on `batch`, as in
            `lsuv_`: the recurrent Jacobian diag(1 - h^2) W_hh then keeps the gradient's
            norm through time, Saxe et al. 2014, Le, Jaitly & Hinton 2015).
        generator: the draws, seeded per trial.
        batch: (inputs, targets), used by "lsuv" and "rnn_isometry" only.
    """
    if rule == "critical":
        init_model_(model, "lecun_normal", gain=math.sqrt(value), bias="zeros", generator=generator)
    elif rule == "lsuv":
        init_model_(model, "orthogonal", bias="zeros", generator=generator)
        lsuv_(model, batch[0], value)
    elif rule == "rnn_isometry":
        init_model_(model, "orthogonal", gain=value, bias="zeros", generator=generator)
        for rnn in (m for m in model.modules() if isinstance(m, nn.RNN)):
            if rnn.nonlinearity != "tanh":
                continue
            if value != 1.0:  # W_hh orthogonal at gain 1: every singular value 1
                init_model_(rnn, "orthogonal", bias="zeros", generator=generator)
            _scale_(model, rnn, batch[0], "weight_ih", None)
    else:
        init_model_(model, rule, gain=value, bias="zeros", generator=generator)


@torch.no_grad()
def lsuv_(model: nn.Module, inputs: Any, target_var: float = 1.0) -> None:
    """Scale each Linear / Conv layer, in forward order, so its output variance on
    `inputs` is `target_var` (LSUV). A tanh nn.RNN keeps its orthogonal W_hh and has its
    W_ih scaled so the hidden states' variance is 1/T over T steps: with tanh'(a) ~ 1 - a^2
    the gain through time stays near (1 - 1/T)^T ~ 1/e instead of shrinking each step."""
    for layer in (m for m in model.modules() if isinstance(m, (*_LAYERS, nn.RNN))):
        recurrent = isinstance(layer, nn.RNN)
        if recurrent and layer.nonlinearity != "tanh":
            continue
        _scale_(model, layer, inputs, "weight_ih" if recurrent else "weight",
                None if recurrent else target_var)  # fmt: skip


@torch.no_grad()
def _scale_(model: nn.Module, layer: nn.Module, inputs: Any, prefix: str, target) -> None:
    """Scale `layer`'s weights named `prefix`* until its output variance on `inputs` is
    `target` (None: 1/T for a recurrent layer over T steps), within LSUV_TOL."""
    for _ in range(LSUV_ROUNDS):
        var, steps = _output_var(model, layer, inputs)
        goal = 1.0 / steps if target is None else target
        if not math.isfinite(var) or var <= 0 or abs(var / goal - 1) < LSUV_TOL:
            return
        for name, weight in layer.named_parameters():
            if name.startswith(prefix):
                weight.mul_(math.sqrt(goal / var))


def _output_var(model: nn.Module, layer: nn.Module, inputs: Any) -> tuple[float, int]:
    """The variance of `layer`'s output on `inputs`, and its time steps (1 if none)."""
    seen: list[tuple[float, int]] = []

    def hook(module, args, out):
        out = out[0] if isinstance(out, tuple) else out  # an RNN returns (output, h_n)
        steps = out.shape[1] if isinstance(module, nn.RNN) and module.batch_first else 1
        if isinstance(module, nn.RNN) and not module.batch_first:
            steps = out.shape[0]
        seen.append((float(out.var()), int(steps)))

    handle = layer.register_forward_hook(hook)
    try:
        model(inputs)
    finally:
        handle.remove()
    return seen[0] if seen else (float("nan"), 1)


@torch.no_grad()
def set_forget_bias_(model: nn.Module, value: float) -> int:
    """Set the forget-gate bias of every LSTM layer to `value` (b_ih's f block; b_hh's f
    block to 0, so the sum is `value`). Returns the number of layers changed."""
    changed = 0
    for lstm in (m for m in model.modules() if isinstance(m, nn.LSTM)):
        h = lstm.hidden_size
        for name, bias in lstm.named_parameters():
            if name.startswith("bias_ih"):  # gate order i, f, g, o (torch.nn.LSTM)
                bias[h : 2 * h] = value
            elif name.startswith("bias_hh"):
                bias[h : 2 * h] = 0.0
        changed += 1
    return changed


@torch.no_grad()
def chrono_init_(model: nn.Module, max_steps: int, generator: torch.Generator) -> int:
    """Chrono initialisation of every LSTM (Tallec & Ollivier 2018, "Can recurrent neural
    networks warp time?"): forget bias log(u), u ~ U(1, T - 1), input bias its negative,
    so the units' memory time scales spread over 1..T - 1 steps. Returns layers changed."""
    changed = 0
    for lstm in (m for m in model.modules() if isinstance(m, nn.LSTM)):
        h = lstm.hidden_size
        for name, bias in lstm.named_parameters():
            if not name.startswith("bias_ih"):
                if name.startswith("bias_hh"):
                    bias[: 2 * h] = 0.0
                continue
            u = torch.rand(h, generator=generator) * max(max_steps - 2, 0) + 1  # U(1, T-1)
            bias[h : 2 * h] = u.log()  # gate order i, f, g, o (torch.nn.LSTM)
            bias[:h] = -u.log()
        changed += 1
    return changed


def strip_head_(model: nn.Module, head: str | None) -> bool:
    """Replace the output module `head` (a qualified name) by nn.Identity if it is a
    Softmax, LogSoftmax or Sigmoid; True when it was replaced."""
    if not head:
        return False
    module = model.get_submodule(head)
    if type(module).__name__ not in HEADS:
        return False
    parent_name, _, child = head.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, nn.Identity())
    return True
