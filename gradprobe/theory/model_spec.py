"""A `NetworkSpec` from a model's actual weights, its chain worked out from module order.

Modules are read in registration order (which is forward order for nn.Sequential and the
lab's models): a weight layer (Linear, Conv with stride 1 and size-preserving padding)
starts a LayerSpec; a LayerNorm and an activation module after it join it; the next
weight layer closes it. The lab's ResidualBlock (attributes fc, act, norm, alpha) is one
residual LayerSpec. A module whose forward adds skip connections in code is not visible
this way: build its spec with `NetworkSpec` explicitly.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gradprobe.theory.activations import Activation, get_activation
from gradprobe.theory.spec import LayerSpec, NetworkSpec

_PASS = (nn.Identity, nn.Flatten, nn.Unflatten)
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
# Why each uncovered kind is not predicted (THEORY.md, "Residual and normalised nets")
_REASONS = {
    "BatchNorm": "BatchNorm couples the examples of a batch: its gradient grows with depth "
    "whatever sigma_w, at a batch-size dependent rate (Yang et al. 2019)",
    "MultiheadAttention": "attention mixes positions through a softmax of products of "
    "activations, outside the mean-field chain of Linear layers",
    "recurrent": "recurrent layers tie weights through time (see THEORY.md, recurrent nets)",
}


def _activation(module: nn.Module) -> Activation | None:
    """The theory's Activation for a known activation module, else None."""
    table = {
        nn.ReLU: lambda m: get_activation("relu"),
        nn.LeakyReLU: lambda m: get_activation("leaky_relu", slope=m.negative_slope),
        nn.ELU: lambda m: get_activation("elu", alpha=m.alpha),
        nn.SELU: lambda m: get_activation("selu"),
        nn.GELU: lambda m: get_activation("gelu", approximate=m.approximate),
        nn.Tanh: lambda m: get_activation("tanh"),
        nn.Sigmoid: lambda m: get_activation("sigmoid"),
        nn.Softplus: lambda m: get_activation("softplus", beta=m.beta),
    }
    build = table.get(type(module))
    return build(module) if build is not None else None


def _compose(first: Activation | None, second: Activation) -> Activation:
    if first is None:
        return second
    return Activation(f"{second.name}({first.name})", lambda x: second.phi(first.phi(x)))


def _conv_problem(conv: nn.Module) -> str | None:
    if any(s != 1 for s in conv.stride):
        return f"{type(conv).__name__} with stride {tuple(conv.stride)} changes the spatial size"
    if conv.padding == "same":
        return None
    same = all(
        p * 2 == d * (k - 1) for p, d, k in zip(conv.padding, conv.dilation, conv.kernel_size)
    )
    if conv.padding == "valid" or not same:
        return f"{type(conv).__name__} with padding {conv.padding} changes the spatial size"
    return None


@torch.no_grad()
def _weight_stats(module: nn.Module) -> tuple[float, float, int, int]:
    """(sigma_w^2 = fan_in * mean W^2, mean b^2, fan_in, width) of a Linear or Conv."""
    w = module.weight.detach().double()
    fan_in = math.prod(w.shape[1:])  # Conv: in_channels / groups * kernel numel
    sigma_w2 = fan_in * float(w.pow(2).mean())
    bias = getattr(module, "bias", None)
    sigma_b2 = float(bias.detach().double().pow(2).mean()) if bias is not None else 0.0
    return sigma_w2, sigma_b2, fan_in, w.shape[0]


def _weight_layer(name: str, module: nn.Module) -> dict:
    sigma_w2, sigma_b2, fan_in, width = _weight_stats(module)
    problem = _conv_problem(module) if isinstance(module, _CONV) else None
    return dict(
        name=name, sigma_w2=sigma_w2, sigma_b2=sigma_b2, fan_in=fan_in, width=int(width),
        layer_type=type(module).__name__, not_predicted=problem,
    )  # fmt: skip


def _uncovered_reason(module: nn.Module) -> str:
    kind = type(module).__name__
    for key, why in _REASONS.items():
        if key in kind or (key == "recurrent" and isinstance(module, nn.RNNBase)):
            return f"{kind}: {why}"
    if isinstance(module, nn.Dropout):
        return f"{kind}(p={module.p}) in training mode (call model.eval() to predict without it)"
    return f"{kind} is not a layer type the theory covers"


class _Chain:
    """Collects LayerSpecs while the modules are read in order."""

    def __init__(self) -> None:
        self.layers: list[LayerSpec] = []
        self.open: dict | None = None
        self.early: str | None = None  # an uncovered module before the first weight layer

    def close(self) -> None:
        if self.open is not None:
            self.layers.append(LayerSpec(**self.open))
            self.open = None

    def start(self, fields: dict) -> None:
        self.close()
        if self.early and not fields.get("not_predicted"):
            fields["not_predicted"], self.early = f"its input passes {self.early}", None
        self.open = fields

    def flag(self, reason: str) -> None:
        if self.open is None:
            self.early = self.early or reason
        elif not self.open.get("not_predicted"):
            self.open["not_predicted"] = reason

    def norm(self, module: nn.LayerNorm) -> None:
        if self.open is None or self.open.get("norm") or self.open.get("activation"):
            self.flag("LayerNorm other than on a weight layer's output (before its activation)")
            return
        gamma2, beta2 = 1.0, 0.0
        if module.weight is not None:
            gamma2 = float(module.weight.detach().double().pow(2).mean())
        if module.bias is not None:
            beta2 = float(module.bias.detach().double().pow(2).mean())
        self.open.update(norm="layer", norm_gain2=gamma2, norm_bias2=beta2)

    def activation(self, act: Activation) -> None:
        if self.open is None:
            self.flag(f"activation {act.name} before the first weight layer")
            return
        self.open["activation"] = _compose(self.open.get("activation"), act)


def _residual_block(chain: _Chain, name: str, block: nn.Module) -> None:
    chain.start({**_weight_layer(f"{name}.fc", block.fc), "alpha": float(block.alpha)})
    _read(chain, f"{name}.norm", block.norm)
    _read(chain, f"{name}.act", block.act)
    chain.close()


def _is_residual_block(module: nn.Module) -> bool:
    """The lab's ResidualBlock: y = x + alpha * act(norm(fc(x)))."""
    names = ("fc", "act", "norm", "alpha")
    return type(module).__name__ == "ResidualBlock" and all(hasattr(module, n) for n in names)


def _read(chain: _Chain, name: str, module: nn.Module) -> None:
    """Add `module` (and, for containers, its children in order) to the chain."""
    act = _activation(module)
    if _is_residual_block(module):
        _residual_block(chain, name, module)
    elif isinstance(module, (nn.Linear, *_CONV)):
        chain.start(_weight_layer(name, module))
    elif isinstance(module, nn.LayerNorm):
        chain.norm(module)
    elif act is not None:
        chain.activation(act)
    elif isinstance(module, _PASS) or (isinstance(module, nn.Dropout) and not module.training):
        return
    elif isinstance(module, (*_BATCHNORM, nn.MultiheadAttention, nn.RNNBase, nn.Dropout)):
        chain.flag(_uncovered_reason(module))
    elif any(True for _ in module.children()):
        for child_name, child in module.named_children():
            _read(chain, f"{name}.{child_name}" if name else child_name, child)
    else:
        chain.flag(_uncovered_reason(module))


def spec_from_model(model: nn.Module) -> NetworkSpec:
    """The NetworkSpec of `model` from its actual weights (sigma_w^2 = fan_in * mean W^2).

    Args:
        model: an nn.Module: nn.Sequential of Linear / Conv and activation modules, the
            lab's mlp and residual_mlp, or any module whose weight layers are followed by
            known activation modules in registration order.

    Returns:
        A NetworkSpec; layers the theory cannot predict through carry `not_predicted`
        (a BatchNorm, attention, recurrent or unknown module names its type there).

    Raises:
        ValueError: `model` holds no Linear or Conv layer.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    chain = _Chain()
    _read(chain, "", model)
    chain.close()
    if not chain.layers:
        raise ValueError(
            f"{type(model).__name__} holds no Linear or Conv layer: nothing to predict"
            + (f" ({chain.early})" if chain.early else "")
        )
    return NetworkSpec(tuple(chain.layers))
