"""Activations by name, as real `torch.nn` modules.

The probe recognises `nn.Sigmoid`, `nn.Tanh` and `nn.ReLU` modules placed after a layer to
measure saturation and dead units, so every activation here is the stock torch module, never
a lambda or a functional wrapper.
"""

from __future__ import annotations

from torch import nn

ACTIVATIONS: tuple[str, ...] = (
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "elu",
    "selu",
    "gelu",
    "softplus",
    "linear",
)

# name -> allowed keyword parameters and their defaults (torch's own defaults)
_PARAMS: dict[str, dict[str, object]] = {
    "sigmoid": {},
    "tanh": {},
    "relu": {},
    "leaky_relu": {"slope": 0.01},  # nn.LeakyReLU's default negative_slope
    "elu": {"alpha": 1.0},  # nn.ELU's default (Clevert et al. 2015)
    "selu": {},  # fixed lambda 1.0507, alpha 1.6733 (Klambauer et al. 2017)
    "gelu": {"approximate": "none"},  # exact erf form; "tanh" is Hendrycks & Gimpel's approx.
    "softplus": {"beta": 1.0},  # nn.Softplus's default
    "linear": {},
}


def check_activation(name: str) -> str:
    """Return `name` if it is a known activation.

    Args:
        name: one of `ACTIVATIONS`.

    Returns:
        The same name.

    Raises:
        ValueError: `name` is not one of `ACTIVATIONS`.
    """
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ValueError(f"activation={name!r} is not one of: {', '.join(ACTIVATIONS)}")
    return name


def activation_defaults(name: str) -> dict[str, object]:
    """The keyword parameters activation `name` accepts, with their defaults."""
    return dict(_PARAMS[check_activation(name)])


def _check_params(name: str, params: dict[str, object]) -> dict[str, object]:
    allowed = _PARAMS[name]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        hint = ", ".join(allowed) if allowed else "none"
        raise ValueError(
            f"activation {name!r} got unknown parameter(s) {', '.join(unknown)}; allowed: {hint}"
        )
    return {**allowed, **params}


def make_activation(name: str, **params) -> nn.Module:
    """Build the activation module called `name`.

    Args:
        name: one of `ACTIVATIONS`.
        **params: `slope` for leaky_relu (default 0.01), `alpha` for elu (1.0),
            `approximate` for gelu ("none" or "tanh"), `beta` for softplus (1.0).

    Returns:
        A fresh `nn.Module`: nn.Sigmoid, nn.Tanh, nn.ReLU, nn.LeakyReLU, nn.ELU, nn.SELU,
        nn.GELU, nn.Softplus or nn.Identity (for "linear"). Never in-place.

    Raises:
        ValueError: unknown name or unknown parameter.
    """
    p = _check_params(check_activation(name), params)
    if p.get("approximate", "none") not in ("none", "tanh"):
        raise ValueError(f"gelu approximate={p['approximate']!r} is not one of: none, tanh")
    builders = {
        "sigmoid": nn.Sigmoid,
        "tanh": nn.Tanh,
        "relu": nn.ReLU,
        "leaky_relu": lambda: nn.LeakyReLU(negative_slope=float(p["slope"])),
        "elu": lambda: nn.ELU(alpha=float(p["alpha"])),
        "selu": nn.SELU,
        "gelu": lambda: nn.GELU(approximate=str(p["approximate"])),
        "softplus": lambda: nn.Softplus(beta=float(p["beta"])),
        "linear": nn.Identity,
    }
    return builders[name]()
