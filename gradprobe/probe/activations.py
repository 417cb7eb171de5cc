"""Activation modules: which parameter-free modules apply a nonlinearity, and of what kind.

When such a module is applied directly to a layer's output, the probe attributes its
output to that layer (a^l = phi(z^l)), so saturation and dead units can be counted. An
activation applied functionally (torch.sigmoid inside forward) cannot be seen; the layer's
own output is then its activation and saturated_frac / dead_frac are not measured.
"""

from __future__ import annotations

from torch import nn

# kind: "sigmoid"/"tanh" saturate, "relu" can die, None is neither.
ACTIVATION_KINDS: dict[type, str | None] = {
    nn.Sigmoid: "sigmoid",
    nn.Tanh: "tanh",
    nn.ReLU: "relu",
    nn.ReLU6: "relu",
    nn.LeakyReLU: None,
    nn.ELU: None,
    nn.SELU: None,
    nn.CELU: None,
    nn.GELU: None,
    nn.SiLU: None,
    nn.Mish: None,
    nn.Softplus: None,
    nn.Softsign: None,
    nn.Hardtanh: None,
    nn.Hardsigmoid: None,
    nn.Hardswish: None,
    nn.LogSigmoid: None,
    nn.Tanhshrink: None,
}


def activation_kind(module: nn.Module) -> tuple[bool, str | None]:
    """(is an activation module, its kind) for a module without parameters of its own."""
    for cls in type(module).__mro__:
        if cls in ACTIVATION_KINDS:
            return True, ACTIVATION_KINDS[cls]
    return False, None
