"""A network as the theory sees it: per layer sigma_w^2, sigma_b^2, activation, width.

`LayerSpec` is one weight layer (Linear, or Conv with fan_in = in_channels * kernel
numel) with what follows it up to the next weight layer: an optional LayerNorm on its
output, then its activation. A residual block y = x + alpha * act(norm(fc(x))) is one
LayerSpec with `alpha` set. `NetworkSpec` is the chain in forward order; build one from
explicit values (`NetworkSpec.mlp`, `NetworkSpec.residual`) or from a model's actual
weights (`gradprobe.theory.model_spec.spec_from_model`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from gradprobe.theory.activations import Activation, get_activation
from gradprobe.theory.critical import check_variance

ActivationLike = str | Callable | Activation | None


@dataclass(frozen=True)
class LayerSpec:
    """One weight layer and the norm and activation after it.

    Attributes:
        name: the layer's name (a module name such as "fc1" or "blocks.0.fc").
        sigma_w2: fan_in * Var(W) (the mean square of W times fan_in).
        sigma_b2: the mean square of the bias (0 without one).
        activation: the activation after this layer (None: identity, e.g. the output layer).
        width: units this layer outputs (N_l; channels for a conv).
        fan_in: inputs per unit (None when not known).
        layer_type: the module type, for messages ("Linear", "Conv2d").
        norm: None, or "layer" (LayerNorm on this layer's output, before the activation).
        norm_gain2: the mean square of the LayerNorm weight (1 at init).
        norm_bias2: the mean square of the LayerNorm bias (0 at init).
        alpha: None for a plain layer; the branch scale of a residual block
            y = x + alpha * act(norm(W x + b)).
        not_predicted: why the theory cannot predict through this layer, or None.
    """

    name: str
    sigma_w2: float
    sigma_b2: float = 0.0
    activation: Activation | None = None
    width: int = 1
    fan_in: int | None = None
    layer_type: str = "Linear"
    norm: str | None = None
    norm_gain2: float = 1.0
    norm_bias2: float = 0.0
    alpha: float | None = None
    not_predicted: str | None = None

    def __post_init__(self) -> None:
        for key in ("sigma_w2", "sigma_b2", "norm_gain2", "norm_bias2"):
            object.__setattr__(self, key, check_variance(f"{self.name}.{key}", getattr(self, key)))
        if isinstance(self.width, bool) or not isinstance(self.width, numbers.Integral):
            raise ValueError(f"{self.name}.width={self.width!r} must be an int >= 1")
        if self.width < 1:
            raise ValueError(f"{self.name}.width={self.width!r} must be an int >= 1")
        if self.norm not in (None, "layer"):
            raise ValueError(f"{self.name}.norm={self.norm!r} is not one of: None, layer")
        if self.alpha is not None and not math.isfinite(self.alpha):
            raise ValueError(f"{self.name}.alpha={self.alpha!r} must be finite")
        if self.activation is not None:
            object.__setattr__(self, "activation", get_activation(self.activation))

    def __repr__(self) -> str:
        act = self.activation.name if self.activation is not None else "identity"
        parts = [f"{self.name!r}", f"sigma_w2={self.sigma_w2:.4g}", f"sigma_b2={self.sigma_b2:.4g}"]
        parts += [act, f"width={self.width}"]
        if self.norm:
            parts.append(f"norm={self.norm}")
        if self.alpha is not None:
            parts.append(f"residual alpha={self.alpha:g}")
        if self.not_predicted:
            parts.append(f"not predicted: {self.not_predicted}")
        return f"LayerSpec({', '.join(parts)})"


def _per_layer(name: str, value, n: int) -> list:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        return [value] * n
    if len(value) != n:
        raise ValueError(f"{name} has {len(value)} entries; need one per weight layer ({n})")
    return list(value)


@dataclass(frozen=True)
class NetworkSpec:
    """Weight layers in forward order (tuple of `LayerSpec`)."""

    layers: tuple[LayerSpec, ...]

    def __post_init__(self) -> None:
        layers = tuple(self.layers)
        if not layers or not all(isinstance(x, LayerSpec) for x in layers):
            raise ValueError("a NetworkSpec needs at least one LayerSpec, and only LayerSpecs")
        object.__setattr__(self, "layers", layers)

    def __repr__(self) -> str:
        kinds = sorted({x.activation.name if x.activation else "identity" for x in self.layers})
        skipped = sum(x.not_predicted is not None for x in self.layers)
        extra = f", {skipped} not predicted" if skipped else ""
        return f"NetworkSpec({len(self.layers)} layers, activations {', '.join(kinds)}{extra})"

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def names(self) -> list[str]:
        """Layer names in forward order."""
        return [x.name for x in self.layers]

    def uncovered(self) -> list[LayerSpec]:
        """The layers the theory cannot predict through."""
        return [x for x in self.layers if x.not_predicted is not None]

    def with_layers(self, **changes) -> NetworkSpec:
        """A copy with `changes` (LayerSpec fields) applied to every layer."""
        return NetworkSpec(tuple(replace(x, **changes) for x in self.layers))

    @classmethod
    def mlp(
        cls,
        activation: ActivationLike,
        sigma_w2: float | Sequence[float],
        sigma_b2: float | Sequence[float] = 0.0,
        *,
        depth: int,
        width: int,
        n_out: int | None = None,
        norm: str | None = None,
    ) -> NetworkSpec:
        """A fully connected net as the lab's `mlp`: `depth` hidden layers fc1..fc{depth}
        of `width` units with `activation`, then an output layer fc{depth+1} (identity).

        Args:
            activation: name, Activation or elementwise callable.
            sigma_w2: fan_in * Var(W), one for all depth + 1 layers or one per layer.
            sigma_b2: bias variance, one for all or one per layer.
            depth: hidden layers (>= 1).
            width: units per hidden layer.
            n_out: output units (default: width).
            norm: None or "layer" (LayerNorm before each hidden activation).

        Returns:
            A NetworkSpec of depth + 1 layers.
        """
        if isinstance(depth, bool) or not isinstance(depth, numbers.Integral) or depth < 1:
            raise ValueError(f"depth={depth!r} must be an int >= 1")
        n = depth + 1
        w2, b2 = _per_layer("sigma_w2", sigma_w2, n), _per_layer("sigma_b2", sigma_b2, n)
        act = None if activation is None else get_activation(activation)
        layers = [
            LayerSpec(f"fc{i + 1}", w2[i], b2[i], act, width, width, norm=norm)
            for i in range(depth)
        ]
        layers.append(LayerSpec(f"fc{n}", w2[-1], b2[-1], None, n_out or width, width))
        return cls(tuple(layers))

    @classmethod
    def residual(
        cls,
        activation: ActivationLike,
        sigma_w2: float,
        sigma_b2: float = 0.0,
        *,
        depth: int,
        width: int,
        alpha: float = 1.0,
        n_out: int | None = None,
        norm: str | None = None,
    ) -> NetworkSpec:
        """The lab's `residual_mlp`: inp (identity), blocks.i.fc with y = x + alpha act(fc(x))
        for i < depth, then out; every layer with the same sigma_w2 and sigma_b2."""
        if isinstance(depth, bool) or not isinstance(depth, numbers.Integral) or depth < 1:
            raise ValueError(f"depth={depth!r} must be an int >= 1")
        act = None if activation is None else get_activation(activation)
        layers = [LayerSpec("inp", sigma_w2, sigma_b2, None, width)]
        layers += [
            LayerSpec(
                f"blocks.{i}.fc", sigma_w2, sigma_b2, act, width, width, norm=norm, alpha=alpha
            )
            for i in range(depth)
        ]
        layers.append(LayerSpec("out", sigma_w2, sigma_b2, None, n_out or width, width))
        return cls(tuple(layers))
