"""The activations the theory knows, and any elementwise callable.

Each `Activation` gives E[phi'(h)^2], E[phi(h)^2] and E[phi'(h)^4] for h ~ N(0, q): the
closed forms of THEORY.md where they exist, quadrature otherwise. phi' comes from torch
autograd, so a callable needs no derivative of its own.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from gradprobe.theory import gaussian as g

# name -> allowed parameters with their defaults (the torch modules' own defaults)
ACTIVATION_PARAMS: dict[str, dict[str, object]] = {
    "sigmoid": {},
    "tanh": {},
    "relu": {},
    "leaky_relu": {"slope": 0.01},  # nn.LeakyReLU's negative_slope
    "elu": {"alpha": 1.0},  # nn.ELU
    "selu": {},  # lambda 1.0507, alpha 1.6733 (Klambauer et al. 2017)
    "gelu": {"approximate": "none"},  # nn.GELU; "tanh": Hendrycks & Gimpel's approximation
    "softplus": {"beta": 1.0},  # nn.Softplus
    "linear": {},
}
ACTIVATIONS: tuple[str, ...] = tuple(ACTIVATION_PARAMS)


@dataclass(frozen=True, eq=False)
class Activation:
    """One elementwise nonlinearity phi with its Gaussian moments.

    Attributes:
        name: a name from `ACTIVATIONS`, or the callable's name.
        phi: elementwise map of a float64 tensor to a tensor of the same shape.
        params: the parameters it was built with.
        closed_dphi2: q -> E[phi'(h)^2] in closed form, or None (quadrature).
        closed_phi2: q -> E[phi(h)^2] in closed form, or None (quadrature).
    """

    name: str
    phi: Callable[[torch.Tensor], torch.Tensor]
    params: dict = field(default_factory=dict)
    closed_dphi2: Callable | None = None
    closed_phi2: Callable | None = None

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        how = "closed form" if self.closed_dphi2 is not None else "quadrature"
        return f"Activation({self.name}{', ' + params if params else ''}; {how})"

    def values(self, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """phi(h) and phi'(h) elementwise, for an array h of any shape (torch autograd)."""
        x = torch.as_tensor(h, dtype=torch.float64).requires_grad_(True)
        y = self.phi(x)
        if not isinstance(y, torch.Tensor) or y.shape != x.shape:
            raise ValueError(
                f"activation {self.name!r} must map a tensor elementwise to one of the same "
                f"shape; got {type(y).__name__} {getattr(y, 'shape', '')}"
            )
        (dy,) = torch.autograd.grad(y.sum(), x, allow_unused=True)
        dy = torch.zeros_like(x) if dy is None else dy
        return y.detach().numpy(), dy.numpy()

    def moments(self, q) -> dict[str, np.ndarray]:
        """E[phi^2], E[phi'^2], E[phi'^4] at h ~ N(0, q), each an array of shape (k,)."""
        q = np.atleast_1d(np.asarray(q, dtype=float))
        phi, dphi = self.values(g.gaussian_points(q))
        out = {
            "phi2": g.expect(phi**2),
            "dphi2": g.expect(dphi**2),
            "dphi4": g.expect(dphi**4),
        }
        if self.closed_dphi2 is not None:
            out["dphi2"] = self.closed_dphi2(q)
            out["phi2"] = self.closed_phi2(q)
        return out

    def dphi2(self, q) -> np.ndarray:
        """E[phi'(h)^2], h ~ N(0, q): array of shape (k,) for q of shape (k,)."""
        return self.moments(q)["dphi2"]

    def phi2(self, q) -> np.ndarray:
        """E[phi(h)^2], h ~ N(0, q): array of shape (k,)."""
        return self.moments(q)["phi2"]

    def kappa(self, q) -> np.ndarray:
        """3 mu_2 / mu_1^2 - 1 with mu_k = E[phi'^{2k}] (Hanin 2018): the finite-width spread
        of the per-layer gain, Var[ln] ~ kappa / n. Array of shape (k,)."""
        m = self.moments(q)
        with np.errstate(divide="ignore", invalid="ignore"):
            return 3 * m["dphi4"] / m["dphi2"] ** 2 - 1


def _check_params(name: str, params: dict) -> dict:
    allowed = ACTIVATION_PARAMS[name]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        hint = ", ".join(allowed) or "none"
        raise ValueError(
            f"activation {name!r} got unknown parameter(s) {', '.join(unknown)}; allowed: {hint}"
        )
    return {**allowed, **params}


def _builtin(name: str, p: dict) -> Activation:
    slope, alpha = float(p.get("slope", 0.0)), float(p.get("alpha", 1.0))
    table = {
        "linear": (lambda x: x * 1.0, g.linear_dphi2, g.linear_phi2),
        "relu": (F.relu, g.leaky_dphi2, g.leaky_phi2),
        "leaky_relu": (
            lambda x: F.leaky_relu(x, slope),
            functools.partial(g.leaky_dphi2, slope=slope),
            functools.partial(g.leaky_phi2, slope=slope),
        ),
        "elu": (
            lambda x: F.elu(x, alpha),
            functools.partial(g.elu_dphi2, alpha=alpha),
            functools.partial(g.elu_phi2, alpha=alpha),
        ),
        "selu": (
            F.selu,
            functools.partial(g.elu_dphi2, alpha=g.SELU_ALPHA, scale=g.SELU_SCALE),
            functools.partial(g.elu_phi2, alpha=g.SELU_ALPHA, scale=g.SELU_SCALE),
        ),
        "gelu": (lambda x: F.gelu(x, approximate=str(p.get("approximate"))), None, None),
        "tanh": (torch.tanh, None, None),
        "sigmoid": (torch.sigmoid, None, None),
        "softplus": (lambda x: F.softplus(x, beta=float(p["beta"])), None, None),
    }
    phi, dphi2, phi2 = table[name]
    if name == "gelu":
        if p["approximate"] not in ("none", "tanh"):
            raise ValueError(f"gelu approximate={p['approximate']!r} is not one of: none, tanh")
        if p["approximate"] == "none":  # the closed form is for the exact erf GELU
            dphi2, phi2 = g.gelu_dphi2, g.gelu_phi2
    return Activation(name, phi, dict(p), dphi2, phi2)


def get_activation(activation: str | Callable | Activation, **params) -> Activation:
    """An `Activation` from a name in `ACTIVATIONS`, an `Activation`, or any callable.

    Args:
        activation: a name ("tanh", "leaky_relu", ...), an `Activation`, or a callable
            mapping a float64 torch tensor elementwise to a tensor (e.g. torch.tanh,
            `lambda x: x * torch.sigmoid(x)`); its moments come from quadrature.
        **params: the named activation's parameters: slope (leaky_relu), alpha (elu),
            approximate (gelu), beta (softplus).

    Returns:
        An Activation.

    Raises:
        ValueError: unknown name (the message lists the allowed ones) or parameter.
    """
    if isinstance(activation, Activation):
        return activation
    if isinstance(activation, str):
        if activation not in ACTIVATION_PARAMS:
            raise ValueError(
                f"activation={activation!r} is not one of: {', '.join(ACTIVATIONS)} "
                "(or pass any elementwise callable)"
            )
        return _builtin(activation, _check_params(activation, params))
    if callable(activation):
        name = getattr(activation, "__name__", type(activation).__name__)
        return Activation(name, activation, dict(params))
    raise ValueError(
        f"activation={activation!r} is not one of: {', '.join(ACTIVATIONS)}, nor a callable"
    )
