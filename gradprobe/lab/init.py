"""Initialisers by name, applied in place: `initialise_` one layer, `init_model_` a model.

The initialisers, their Var(W) formulas, bias conventions and sources are the table in
gradprobe.lab.init_table (re-exported here), which also defines a weight block and its
fans. Each block of a layer (one gate block of a recurrent matrix) is drawn on its own;
normal draws are plain (not truncated) Gaussians, as torch.nn.init does.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gradprobe.lab.init_table import _I as _I
from gradprobe.lab.init_table import _REGISTRY as _REGISTRY
from gradprobe.lab.init_table import INIT_ALIASES as INIT_ALIASES
from gradprobe.lab.init_table import INITIALISERS as INITIALISERS
from gradprobe.lab.init_table import Initialiser as Initialiser
from gradprobe.lab.init_table import _resolve_gain, _resolve_params, get_initialiser
from gradprobe.lab.init_table import _Variance as _Variance
from gradprobe.lab.init_table import weight_variance as weight_variance

_RECURRENT = (nn.RNN, nn.LSTM, nn.GRU)
_SUPPORTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, *_RECURRENT)
_BIAS_MODES = ("zeros", "normal")


def _orthogonal(rows: int, cols: int, gain: float, draw: torch.Tensor) -> torch.Tensor:
    """gain * Q with orthonormal rows (rows <= cols) or columns; as torch.nn.init.orthogonal_.

    `draw` holds rows * cols standard normal numbers (any shape); Q comes from its QR.
    """
    flat = draw.reshape(rows, cols)
    if rows < cols:
        flat = flat.T
    q, r = torch.linalg.qr(flat)
    q = q * torch.sign(torch.diagonal(r))  # unique Q: Mezzadri 2007, makes it Haar-distributed
    return gain * (q.T if rows < cols else q)


def _sample(spec, shape, gain: float, p: dict, like: torch.Tensor, gen) -> torch.Tensor:
    """A fresh weight block of `shape` (fan_out, fan_in, *kernel) drawn by `spec`."""
    rows, cols = shape[0], math.prod(shape[1:])
    dtype = torch.float64 if like.dtype == torch.float64 else torch.float32
    if spec.sampler == "identity":
        if rows != cols:
            raise ValueError(f"scaled_identity needs a square weight, got shape {tuple(shape)}")
        return (gain * p["g"]) * torch.eye(rows, dtype=dtype).reshape(shape)
    draw = torch.empty(shape, dtype=dtype, device=like.device if gen is None else gen.device)
    if spec.sampler == "orthogonal":
        return _orthogonal(rows, cols, gain, draw.normal_(generator=gen)).reshape(shape)
    if spec.sampler == "uniform":
        return draw.uniform_(p["low"], p["high"], generator=gen)
    receptive = math.prod(shape[2:])  # torch's fans for conv kernels
    var = spec.variance(cols, rows * receptive, gain, p)
    if spec.sampler == "symmetric_uniform":
        bound = math.sqrt(3 * var)  # Var(U(-a, a)) = a^2 / 3
        return draw.uniform_(-bound, bound, generator=gen)
    return draw.normal_(0.0, math.sqrt(var), generator=gen)


def _weight_blocks(module: nn.Module) -> list[torch.Tensor]:
    """Views of the module's weights, one per block (per gate block for recurrent layers)."""
    if not isinstance(module, _RECURRENT):
        return [module.weight]
    blocks = []
    for pname, param in module.named_parameters(recurse=False):
        if pname.startswith(("weight_ih", "weight_hh")):
            blocks.extend(param.split(module.hidden_size, dim=0))  # gate blocks, (H, cols)
        elif pname.startswith("weight_hr"):  # LSTM projection (proj_size, H)
            blocks.append(param)
    return blocks


def _torch_reset(module: nn.Module, gen: torch.Generator | None) -> None:
    """module.reset_parameters(), drawing from `gen` when given (the global RNG is restored)."""
    if gen is None:
        module.reset_parameters()
        return
    seed = int(torch.randint(0, 2**62, (1,), generator=gen, device=gen.device))
    cuda = sorted({p.device.index or 0 for p in module.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        module.reset_parameters()


def _check_bias(bias) -> None:
    if bias is None or bias in _BIAS_MODES:
        return
    if isinstance(bias, bool) or not isinstance(bias, (int, float)) or not math.isfinite(bias):
        raise ValueError(f"bias={bias!r} is not one of: None, zeros, normal, or a finite float")


def _init_biases(module: nn.Module, mode, gen: torch.Generator | None) -> None:
    for b in (p for n, p in module.named_parameters(recurse=False) if n.startswith("bias")):
        if mode == "zeros":
            b.zero_()
        elif mode == "normal":  # N(0, 1), Nielsen's biases
            device = b.device if gen is None else gen.device
            b.copy_(torch.empty(b.shape, device=device).normal_(generator=gen))
        elif mode != "torch":
            b.fill_(float(mode))


def initialise_(
    module: nn.Module,
    name: str,
    *,
    gain: float | None = None,
    bias: str | float | None = None,
    generator: torch.Generator | None = None,
    **params,
) -> nn.Module:
    """Initialise one layer's weights and biases in place.

    Args:
        module: nn.Linear, nn.Conv1d/2d/3d, nn.RNN, nn.LSTM or nn.GRU.
        name: one of `INITIALISERS`.
        gain: multiplies the weights' standard deviation (default 1), where `name` uses one.
        bias: None (the initialiser's convention, see init_table's table), "zeros",
            "normal" (N(0, 1)) or a float constant.
        generator: draw from this generator instead of the global RNG (reproducible runs).
        **params: the initialiser's own parameters (`low`, `high` for uniform; `g`).

    Returns:
        `module`, initialised.

    Raises:
        ValueError: unknown name, parameter or bias mode; negative gain; non-square
            scaled_identity. TypeError: unsupported module type.
    """
    spec = get_initialiser(name)
    g, p = _resolve_gain(spec, gain), _resolve_params(spec, params)
    _check_bias(bias)
    if not isinstance(module, _SUPPORTED):
        kinds = ", ".join(t.__name__ for t in _SUPPORTED)
        raise TypeError(f"cannot initialise {type(module).__name__}; supported: {kinds}")
    with torch.no_grad():
        if spec.sampler == "torch":
            _torch_reset(module, generator)
        else:
            blocks = _weight_blocks(module)
            fresh = [_sample(spec, b.shape, g, p, b, generator) for b in blocks]  # all, then write
            for block, value in zip(blocks, fresh):
                block.copy_(value)
        _init_biases(module, spec.bias if bias is None else bias, generator)
    return module


def init_model_(model: nn.Module, name: str, **kwargs) -> nn.Module:
    """`initialise_` every Linear / Conv / RNN / LSTM / GRU submodule of `model`, in order.

    Args:
        model: any module holding at least one supported layer.
        name: one of `INITIALISERS`.
        **kwargs: as for `initialise_` (gain, bias, generator, initialiser parameters).

    Returns:
        `model`, initialised. Other layers (norms, embeddings) keep their parameters.
    """
    layers = [m for m in model.modules() if isinstance(m, _SUPPORTED)]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no Linear, Conv or RNN layer to initialise")
    for layer in layers:
        initialise_(layer, name, **kwargs)
    return model
