"""The table of initialisers by name, each a formula with its source.

A *weight block* W has shape (fan_out, fan_in): a Linear's weight; a conv's weight flattened
to (out_channels, in_channels / groups * kernel numel), with torch's fans
fan_in = in_channels / groups * kernel numel and fan_out = out_channels * kernel numel; one
gate block of hidden_size rows of an RNN / LSTM / GRU matrix (fan_out = hidden_size).
`gain` multiplies the standard deviation (the uniform bound, the orthogonal matrix, the
identity), so Var(W) scales with gain**2; it defaults to 1. In THEORY.md's notation
sigma_w^2 = fan_in * Var(W).

| name | W | bias when bias=None | source |
|---|---|---|---|
| nielsen | N(0, gain^2 / fan_in) | N(0, 1) | Nielsen, NNDL ch. 3, "Weight initialization" |
| standard_normal | N(0, 1) | N(0, 1) | Nielsen, NNDL ch. 1-3, the "standard approach" |
| glorot_uniform | U(+-gain sqrt(6 / (fan_in + fan_out))) | 0 | Glorot & Bengio 2010, eq. 16 |
| glorot_normal | N(0, 2 gain^2 / (fan_in + fan_out)) | 0 | Glorot & Bengio 2010 |
| he_uniform | U(+-gain sqrt(6 / fan_in)) | 0 | He et al. 2015, arXiv:1502.01852 |
| he_normal | N(0, 2 gain^2 / fan_in) | 0 | He et al. 2015, eq. 10 |
| lecun_normal | N(0, gain^2 / fan_in) | 0 | LeCun et al. 1998; Klambauer 2017 |
| orthogonal | gain * Q, Q Q^T = I | 0 | Saxe et al. 2013, arXiv:1312.6120 |
| uniform | U(low, high), default U(0, 1) | 0 | two-circles tutorial, Keras RandomUniform(0, 1) |
| scaled_identity | gain * g * I (square only) | 0 | two-node chain, g = 0.8 / 1.1; Le et al. 2015 |
| lazyprogrammer | N(0, 1 / (fan_in + fan_out)) | 0 | LazyProgrammer: randn(M1, M2)/sqrt(M1 + M2) |
| torch_default | module.reset_parameters() | torch's | Linear: U(+-1 / sqrt(fan_in)) |

Normal draws are plain (not truncated) Gaussians, as torch.nn.init does; zero biases follow
Keras's `bias_initializer="zeros"`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass

_Variance = Callable[[int, int, float, dict], float]


@dataclass(frozen=True)
class Initialiser:
    """One named initialiser: `variance(fan_in, fan_out, gain, params)` gives Var(W) (the
    mean square for "identity"), `formula` says it in words, `bias` is the convention when
    bias=None, `params` holds (name, default) pairs of its own keyword parameters."""

    name: str
    sampler: str  # normal | symmetric_uniform (U(+-sqrt(3 Var))) | uniform | orthogonal | ...
    variance: _Variance
    formula: str
    bias: str  # zeros | normal | torch
    uses_gain: bool
    source: str
    params: tuple[tuple[str, float], ...] = ()

    def __repr__(self) -> str:
        return (
            f"Initialiser({self.name!r}, Var(W) = {self.formula}, bias={self.bias}, "
            f"source={self.source!r})"
        )


# fmt: off
_I = Initialiser
_REGISTRY: dict[str, Initialiser] = {s.name: s for s in (
    _I("nielsen", "normal", lambda fi, fo, g, p: g * g / fi, "gain^2 / fan_in", "normal", True,
       "Nielsen, Neural Networks and Deep Learning, ch. 3"),
    _I("standard_normal", "normal", lambda fi, fo, g, p: 1.0, "1", "normal", False,
       "Nielsen, Neural Networks and Deep Learning, 'standard approach' (network.py)"),
    _I("glorot_uniform", "symmetric_uniform", lambda fi, fo, g, p: 2 * g * g / (fi + fo),
       "2 gain^2 / (fan_in + fan_out)", "zeros", True, "Glorot & Bengio 2010, eq. 16"),
    _I("glorot_normal", "normal", lambda fi, fo, g, p: 2 * g * g / (fi + fo),
       "2 gain^2 / (fan_in + fan_out)", "zeros", True, "Glorot & Bengio 2010"),
    _I("he_uniform", "symmetric_uniform", lambda fi, fo, g, p: 2 * g * g / fi,
       "2 gain^2 / fan_in", "zeros", True, "He et al. 2015, arXiv:1502.01852"),
    _I("he_normal", "normal", lambda fi, fo, g, p: 2 * g * g / fi, "2 gain^2 / fan_in",
       "zeros", True, "He et al. 2015, arXiv:1502.01852, eq. 10"),
    _I("lecun_normal", "normal", lambda fi, fo, g, p: g * g / fi, "gain^2 / fan_in", "zeros",
       True, "LeCun et al. 1998, Efficient BackProp; Klambauer et al. 2017"),
    _I("orthogonal", "orthogonal", lambda fi, fo, g, p: g * g / max(fi, fo),
       "gain^2 / max(fan_in, fan_out)", "zeros", True, "Saxe et al. 2013, arXiv:1312.6120"),
    _I("uniform", "uniform", lambda fi, fo, g, p: (p["high"] - p["low"]) ** 2 / 12,
       "(high - low)^2 / 12", "zeros", False, "Keras RandomUniform(0, 1), two-circles tutorial",
       (("low", 0.0), ("high", 1.0))),
    _I("scaled_identity", "identity", lambda fi, fo, g, p: (g * p["g"]) ** 2 / fi,
       "(gain g)^2 / fan_in (mean square of gain g I)", "zeros", True,
       "two-node chain demo (g = 0.8 / 1.1); Le, Jaitly & Hinton 2015 (IRNN)", (("g", 1.0),)),
    _I("lazyprogrammer", "normal", lambda fi, fo, g, p: 1 / (fi + fo), "1 / (fan_in + fan_out)",
       "zeros", False, "LazyProgrammer's examples: W = randn(M1, M2) / sqrt(M1 + M2)"),
    _I("torch_default", "torch", lambda fi, fo, g, p: 1 / (3 * fi), "1 / (3 fan_in)", "torch",
       False, "torch.nn.Linear.reset_parameters: kaiming_uniform_(a=sqrt(5))"),
)}
# fmt: on

INITIALISERS: tuple[str, ...] = tuple(_REGISTRY)


# Short names for `gradprobe predict --init` (DESIGN.md writes `--init glorot`; torch calls
# them xavier_* and kaiming_*): the normal variant, whose weight variance is the uniform
# one's, which is all the theory reads. Experiments keep the full names, recorded as given.
INIT_ALIASES = {
    "glorot": "glorot_normal",
    "xavier": "glorot_normal",
    "he": "he_normal",
    "kaiming": "he_normal",
    "lecun": "lecun_normal",
}


def get_initialiser(name: str) -> Initialiser:
    """The `Initialiser` called `name`; ValueError listing `INITIALISERS` if unknown."""
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"init={name!r} is not one of: {', '.join(INITIALISERS)}")
    return _REGISTRY[name]


def _resolve_gain(spec: Initialiser, gain: float | None) -> float:
    if gain is None:
        return 1.0
    if not spec.uses_gain:
        users = ", ".join(s.name for s in _REGISTRY.values() if s.uses_gain)
        raise ValueError(
            f"init {spec.name!r} takes no gain (gain={gain!r}); gain applies to: {users}"
        )
    if isinstance(gain, bool) or not math.isfinite(gain) or gain < 0:
        raise ValueError(f"gain={gain!r} must be a finite number >= 0")
    return float(gain)


def _resolve_params(spec: Initialiser, params: dict) -> dict:
    defaults = dict(spec.params)
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        allowed = ", ".join(defaults) if defaults else "none"
        raise ValueError(
            f"init {spec.name!r} got unknown parameter(s) {', '.join(unknown)}; allowed: {allowed}"
        )
    resolved = {**defaults, **params}
    if spec.name == "uniform" and not resolved["low"] < resolved["high"]:
        raise ValueError(
            f"uniform needs low < high, got low={resolved['low']}, high={resolved['high']}"
        )
    return resolved


def weight_variance(
    name: str, fan_in: int, fan_out: int, *, gain: float | None = None, **params
) -> float:
    """Var(W) of initialiser `name` for a (fan_out, fan_in) weight block.

    For `scaled_identity` it is the mean square (gain g)^2 / fan_in: sigma_w^2 = (gain g)^2.

    Args:
        name: one of `INITIALISERS`.
        fan_in: inputs per unit (>= 1).
        fan_out: units (>= 1).
        gain: multiplies the standard deviation (default 1), where `name` uses one.
        **params: the initialiser's own parameters (`low`, `high` for uniform; `g`).

    Returns:
        The variance of one weight, a float.
    """
    spec = get_initialiser(name)
    for label, fan in (("fan_in", fan_in), ("fan_out", fan_out)):
        if isinstance(fan, bool) or not isinstance(fan, numbers.Integral) or fan < 1:
            raise ValueError(f"{label}={fan!r} must be an int >= 1")
    if spec.sampler == "identity" and fan_in != fan_out:
        raise ValueError(
            f"scaled_identity needs a square weight, got fan_in={fan_in}, fan_out={fan_out}"
        )
    return spec.variance(fan_in, fan_out, _resolve_gain(spec, gain), _resolve_params(spec, params))
