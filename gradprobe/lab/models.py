"""The classic deep networks: MLPs of any depth, residual MLPs, recurrent classifiers.

Layer names are what users of a record read (`fc1`..`fcL`, `blocks.0.fc`, `rnn`, `head`),
so they are fixed here. `recurrent` and its classifier live in gradprobe.lab.models_recurrent
and are re-exported here.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from gradprobe.lab.activations import activation_defaults, check_activation, make_activation
from gradprobe.lab.init import get_initialiser, init_model_
from gradprobe.lab.models_checks import NORMS as NORMS
from gradprobe.lab.models_checks import _check_norm, _check_positive_ints, _check_sizes
from gradprobe.lab.models_recurrent import READOUTS as READOUTS
from gradprobe.lab.models_recurrent import RECURRENT_KINDS as RECURRENT_KINDS
from gradprobe.lab.models_recurrent import RecurrentClassifier as RecurrentClassifier
from gradprobe.lab.models_recurrent import recurrent as recurrent


def _make_norm(norm: str, width: int) -> nn.Module:
    return nn.BatchNorm1d(width) if norm == "batch" else nn.LayerNorm(width)


def depth_to_sizes(n_in: int, depth: int, width: int, n_out: int) -> list[int]:
    """Layer sizes of an MLP with `depth` hidden layers of `width` units.

    Args:
        n_in: input features.
        depth: number of hidden layers (>= 1).
        width: units per hidden layer (>= 1).
        n_out: outputs.

    Returns:
        [n_in, width, ..., width, n_out], a list of depth + 2 ints.
    """
    _check_positive_ints(n_in=n_in, depth=depth, width=width, n_out=n_out)
    return [int(n_in), *([int(width)] * int(depth)), int(n_out)]


def _hidden_activations(activation: str, activations, n_hidden: int) -> list[str]:
    if activations is None:
        return [check_activation(activation)] * n_hidden
    activations = list(activations)
    if len(activations) != n_hidden:
        raise ValueError(
            f"activations has {len(activations)} entries; need one per hidden layer "
            f"({n_hidden} for these sizes)"
        )
    return [check_activation(a) for a in activations]


def _params_for(names: list[str], params: dict) -> list[dict]:
    """Per activation, the entries of `params` it accepts; a key none accepts is an error."""
    accepted = [set(activation_defaults(n)) for n in names]
    unused = sorted(set(params) - set().union(*accepted))
    if unused:
        raise ValueError(
            f"activation_params {', '.join(unused)} apply to none of the activations "
            f"{', '.join(sorted(set(names)))}"
        )
    return [{k: v for k, v in params.items() if k in keys} for keys in accepted]


def mlp(
    sizes: Sequence[int],
    activation: str = "sigmoid",
    init: str = "nielsen",
    *,
    activations: Sequence[str] | None = None,
    output_activation: str | None = None,
    norm: str | None = None,
    gain: float | None = None,
    bias_init: str | float | None = None,
    activation_params: dict | None = None,
    init_params: dict | None = None,
    generator: torch.Generator | None = None,
) -> nn.Sequential:
    """A fully connected network, Nielsen's `Network(sizes)` in torch.

    Modules, in order: fc1, [norm1], act1, fc2, ..., fcL, [out_act]. Norms sit on the
    pre-activations (between fc and act); the output layer fcL has none.

    Args:
        sizes: [n_in, h1, ..., n_out], at least two ints >= 1.
        activation: hidden activation, one of `ACTIVATIONS`.
        init: initialiser applied to every Linear, one of `INITIALISERS`.
        activations: per-hidden-layer override, one name per hidden layer.
        output_activation: an activation after fcL (e.g. "sigmoid" for Nielsen's
            quadratic-cost output); None or "none" for raw outputs (logits).
        norm: None / "none", "batch" (BatchNorm1d) or "layer" (LayerNorm).
        gain: multiplies the initial weights' standard deviation.
        bias_init: None (the initialiser's convention), "zeros", "normal" or a float.
        activation_params: keyword parameters for the hidden activations, each given to
            those that accept it (e.g. {"slope": 0.1} for leaky_relu layers).
        init_params: the initialiser's own parameters (e.g. {"g": 0.8}).
        generator: draw the initial weights from this generator.

    Returns:
        nn.Sequential mapping (B, n_in) to (B, n_out).
    """
    sizes = _check_sizes(sizes)
    acts = _hidden_activations(activation, activations, len(sizes) - 2)
    norm = _check_norm(norm)
    get_initialiser(init)
    act_params = _params_for(acts, activation_params or {}) if acts else []
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        layers[f"fc{i}"] = nn.Linear(n_in, n_out)
        if i == len(sizes) - 1:
            break
        if norm is not None:
            layers[f"norm{i}"] = _make_norm(norm, n_out)
        layers[f"act{i}"] = make_activation(acts[i - 1], **act_params[i - 1])
    if output_activation is not None and output_activation != "none":
        layers["out_act"] = make_activation(check_activation(output_activation))
    model = nn.Sequential(layers)
    kwargs = dict(gain=gain, bias=bias_init, generator=generator, **(init_params or {}))
    return init_model_(model, init, **kwargs)


class ResidualBlock(nn.Module):
    """y = x + alpha * act(norm(fc(x))), one Linear per block.

    Args:
        width: features in and out.
        alpha: branch scale (1 / sqrt(depth) keeps the gradient bounded, THEORY.md).
        activation: one of `ACTIVATIONS`.
        norm: None, "batch" or "layer", on the branch's pre-activation.
    """

    def __init__(self, width: int, alpha: float, activation: str, norm: str | None):
        super().__init__()
        self.alpha = float(alpha)
        self.fc = nn.Linear(width, width)
        self.norm = _make_norm(norm, width) if norm is not None else nn.Identity()
        self.act = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.alpha * self.act(self.norm(self.fc(x)))  # (B, width)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha:g}"


class ResidualMLP(nn.Module):
    """inp -> blocks.0 ... blocks.{depth-1} -> out (see `residual_mlp`)."""

    def __init__(self, blocks: list[ResidualBlock], in_features: int, out_features: int):
        super().__init__()
        width = blocks[0].fc.in_features
        self.inp = nn.Linear(in_features, width)
        self.blocks = nn.ModuleList(blocks)
        self.out = nn.Linear(width, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)  # (B, width)
        for block in self.blocks:
            h = block(h)
        return self.out(h)  # (B, out_features)


def residual_mlp(
    depth: int,
    width: int,
    *,
    in_features: int,
    out_features: int,
    alpha: float = 1.0,
    activation: str = "relu",
    init: str = "he_normal",
    norm: str | None = None,
    gain: float | None = None,
    bias_init: str | float | None = None,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """A residual MLP: input projection, `depth` blocks y = x + alpha act(fc(x)), output layer.

    Args:
        depth: number of residual blocks (>= 1).
        width: features inside the residual stream (>= 1).
        in_features: input features.
        out_features: outputs.
        alpha: branch scale.
        activation: one of `ACTIVATIONS`.
        init: initialiser for every Linear (inp, blocks.*.fc, out).
        norm: None / "none", "batch" or "layer", on each branch's pre-activation.
        gain: multiplies the initial weights' standard deviation.
        bias_init: None (the initialiser's convention), "zeros", "normal" or a float.
        generator: draw the initial weights from this generator.

    Returns:
        `ResidualMLP` mapping (B, in_features) to (B, out_features); layers named inp,
        blocks.0.fc, ..., out.
    """
    _check_positive_ints(
        depth=depth, width=width, in_features=in_features, out_features=out_features
    )
    check_activation(activation)
    get_initialiser(init)
    norm = _check_norm(norm)
    blocks = [ResidualBlock(width, alpha, activation, norm) for _ in range(depth)]
    model = ResidualMLP(blocks, in_features, out_features)
    return init_model_(model, init, gain=gain, bias=bias_init, generator=generator)
