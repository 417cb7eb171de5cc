"""Layer discovery: which modules are layers, their weights and biases, their unit axis.

A layer is a module that owns parameters directly (DESIGN.md). What the probe needs to
know about a module type lives in one registry (BackPACK's pattern); a type not in it is
handled by the `unknown` mode: "hook" (measure it generically), "skip" or "error".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass(frozen=True)
class LayerSpec:
    """What the probe knows about a layer type.

    Attributes:
        feature_dim: the axis of the output that indexes units (1 for channels-first
            conv and norm layers, -1 for features-last layers).
        bias_is_delta: the output is `something + bias` broadcast over every other axis,
            so dC/dz summed over the batch equals dC/db exactly (Nielsen 2015, eq. BP3)
            and the probe reads delta from bias.grad instead of hooking the backward.
    """

    feature_dim: int = -1
    bias_is_delta: bool = False


_CHANNELS_FIRST = LayerSpec(feature_dim=1, bias_is_delta=True)
_FEATURES_LAST = LayerSpec(feature_dim=-1, bias_is_delta=True)

REGISTRY: dict[type, LayerSpec] = {
    nn.Linear: _FEATURES_LAST,
    nn.Bilinear: _FEATURES_LAST,
    nn.LayerNorm: _FEATURES_LAST,
    nn.Conv1d: _CHANNELS_FIRST,
    nn.Conv2d: _CHANNELS_FIRST,
    nn.Conv3d: _CHANNELS_FIRST,
    nn.ConvTranspose1d: _CHANNELS_FIRST,
    nn.ConvTranspose2d: _CHANNELS_FIRST,
    nn.ConvTranspose3d: _CHANNELS_FIRST,
    nn.BatchNorm1d: _CHANNELS_FIRST,
    nn.BatchNorm2d: _CHANNELS_FIRST,
    nn.BatchNorm3d: _CHANNELS_FIRST,
    nn.GroupNorm: _CHANNELS_FIRST,
    nn.InstanceNorm1d: _CHANNELS_FIRST,
    nn.InstanceNorm2d: _CHANNELS_FIRST,
    nn.InstanceNorm3d: _CHANNELS_FIRST,
    nn.PReLU: LayerSpec(feature_dim=1),
    nn.Embedding: LayerSpec(),
    nn.EmbeddingBag: LayerSpec(),
    nn.RNN: LayerSpec(),
    nn.LSTM: LayerSpec(),
    nn.GRU: LayerSpec(),
    nn.RNNCell: LayerSpec(),
    nn.LSTMCell: LayerSpec(),
    nn.GRUCell: LayerSpec(),
    nn.MultiheadAttention: LayerSpec(),
}

UNKNOWN_MODES = ("hook", "skip", "error")


@dataclass
class Layer:
    """One watched layer: a module that owns parameters."""

    index: int
    name: str
    module: nn.Module
    spec: LayerSpec
    weights: list[nn.Parameter] = field(default_factory=list)
    biases: list[nn.Parameter] = field(default_factory=list)

    @property
    def type(self) -> str:
        return type(self.module).__name__

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.weights + self.biases)

    @property
    def delta_from_bias(self) -> bool:
        """True when delta is read from the single bias gradient (see LayerSpec).

        A frozen bias has no gradient to read, so its layer's delta is hooked instead
        (decided when the probe attaches).
        """
        return self.spec.bias_is_delta and len(self.biases) == 1 and self.biases[0].requires_grad

    def __repr__(self) -> str:
        return f"Layer({self.index}, {self.name!r}, {self.type}, {self.n_params} params)"


def spec_for(module: nn.Module, unknown: str) -> LayerSpec | None:
    """The registry entry for a module (most derived registered type), or the unknown mode."""
    for cls in type(module).__mro__:
        if cls in REGISTRY:
            return REGISTRY[cls]
    if unknown == "hook":
        return LayerSpec()
    if unknown == "skip":
        return None
    raise TypeError(
        f"module type {type(module).__name__} is not in gradprobe's layer registry and "
        f"unknown='error' was given; use unknown='hook' to measure it generically or "
        f"unknown='skip' to leave it out (allowed: {', '.join(UNKNOWN_MODES)})"
    )


def _is_bias(name: str) -> bool:
    return "bias" in name.split(".")[-1]


def discover(model: nn.Module, unknown: str = "hook") -> list[Layer]:
    """Every module of `model` that owns parameters, in registration order.

    Args:
        model: any module tree.
        unknown: what to do with parameter-owning types not in REGISTRY: "hook", "skip"
            or "error".

    Returns:
        the layers; a parameter shared by several modules is listed under each.
    """
    if unknown not in UNKNOWN_MODES:
        raise ValueError(f"unknown={unknown!r} is not one of: {', '.join(UNKNOWN_MODES)}")
    layers: list[Layer] = []
    for name, module in model.named_modules():
        own = list(module.named_parameters(recurse=False))
        if not own:
            continue
        spec = spec_for(module, unknown)
        if spec is None:
            continue
        layer = Layer(len(layers), name or type(module).__name__, module, spec)
        for pname, p in own:
            (layer.biases if _is_bias(pname) else layer.weights).append(p)
        layers.append(layer)
    return layers


def describe(layer: Layer, activation: str | None, hooked: bool) -> dict:
    """The layer's entry in a Record's layer_info."""
    return {
        "name": layer.name,
        "type": layer.type,
        "activation": activation,
        "n_params": layer.n_params,
        # fan-in / fan-out of each weight: diagnosis splits a layer's gain into a weight factor
        "weight_shapes": [list(w.shape) for w in layer.weights],
        "feature_dim": layer.spec.feature_dim,
        "delta_source": "bias_grad" if layer.delta_from_bias and not hooked else "output_hook",
    }


def first_tensor(output) -> torch.Tensor | None:
    """The tensor a layer's output gradient is taken at: the output, or its first tensor."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        for item in output:
            if isinstance(item, torch.Tensor):
                return item
    return None
