"""The gradient through time: ||dC/dh_t|| per time step of every nn.RNN / LSTM / GRU layer.

Series "delta_norm_t", array of shape (n_layers, T) per recorded step: for a recurrent
layer, value[t] is the L2 norm over the batch and the hidden units of the TOTAL derivative
dC/dh_t of the loss with respect to the layer's hidden state at time t, the path through
every later time step included. With num_layers > 1 it is the top stacked layer's h_t
(the one the module outputs). A layer called several times in one step (micro-batches)
gives sqrt(sum over calls of ||dC/dh_t||^2), the calls aligned at t = 0.

The gradient that reaches the module's `output` tensor is only the direct part dC/dh_t
through output[t] (zero for t < T-1 in a classifier reading the last step): the part
through h_{t+1} is computed inside the fused RNN kernel. So on detail steps the forward
hook keeps the layer's inputs, and once backward has produced the gradients of all its
outputs (output, h_n, c_n: one multi-grad hook), the top layer is replayed unrolled
(gradprobe.probe.unroll) and autograd gives dC/dh_t. Cost: one unrolled forward and
backward of the layer per detail step; nothing on other steps.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import partial

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from gradprobe.probe.layers import Layer
from gradprobe.probe.unroll import hidden_grads, unsupported_reason
from gradprobe.stats.quantities import SERIES_QUANTITIES

NAME = "delta_norm_t"
assert NAME in SERIES_QUANTITIES  # the public vocabulary (DESIGN.md "Quantities")


def _dynamic_reason(module: nn.RNNBase, x) -> str | None:
    """Why this call cannot be replayed, known only at forward time (None: it can)."""
    if isinstance(x, PackedSequence):
        return "packed sequence input is not supported"
    if not isinstance(x, torch.Tensor) or x.dim() not in (2, 3):
        return f"input of type {type(x).__name__} is not a 2-d or 3-d tensor"
    if module.training and module.dropout > 0 and module.num_layers > 1:
        return f"dropout={module.dropout} between stacked layers in training is random"
    return None


def _time_major(module: nn.RNNBase, x: torch.Tensor, hx) -> tuple:
    """(x (T, B, I), (h0 (L, B, H), c0 or None), unbatched) from the call's arguments."""
    dtype = module.weight_hh_l0.dtype
    unbatched = x.dim() == 2
    x = x.unsqueeze(1) if unbatched else (x.transpose(0, 1) if module.batch_first else x)
    x = x.detach().to(dtype)
    is_lstm = module.mode == "LSTM"
    if hx is None:
        zeros = x.new_zeros(module.num_layers, x.shape[1], module.hidden_size)
        return x, (zeros, zeros if is_lstm else None), unbatched
    states = tuple(hx) if is_lstm else (hx, None)
    states = tuple(
        None if s is None else (s.unsqueeze(1) if unbatched else s).detach().to(dtype)
        for s in states
    )
    return x, states, unbatched


def _grads_time_major(module: nn.RNNBase, grads: tuple, unbatched: bool, dtype) -> tuple:
    """The output gradients (d output, d h_n, d c_n) in the layout of _time_major."""
    g_out, g_hn, g_cn = (None if g is None else g.detach().to(dtype) for g in grads)
    if unbatched:
        return tuple(None if g is None else g.unsqueeze(1) for g in (g_out, g_hn, g_cn))
    if g_out is not None and module.batch_first:
        g_out = g_out.transpose(0, 1)
    return g_out, g_hn, g_cn


class ThroughTime:
    """Per recurrent layer and step, sum over calls of ||dC/dh_t||^2 for every t.

    Args:
        layers: the probe's layers; the nn.RNN / LSTM / GRU among them are measured.
        measuring: called at each forward; True when this pass is to be measured
            (the probe's detail steps, with grad enabled).
    """

    def __init__(self, layers: list[Layer], measuring: Callable[[], bool]) -> None:
        self.layers = [layer for layer in layers if isinstance(layer.module, nn.RNNBase)]
        self._measuring = measuring
        self._reasons = {
            layer.index: reason
            for layer in self.layers
            if (reason := unsupported_reason(layer.module)) is not None
        }
        self.indices = [layer.index for layer in self.layers if layer.index not in self._reasons]
        self._skipped: dict[int, list[str]] = {}  # layer index -> why some calls were not
        self._sumsq: dict[int, torch.Tensor] = {}
        self.active = True

    def attach(self) -> list:
        """Forward hooks on the measurable layers; returns their handles."""
        return [
            layer.module.register_forward_hook(partial(self._on_forward, layer), with_kwargs=True)
            for layer in self.layers
            if layer.index not in self._reasons
        ]

    def _on_forward(self, layer: Layer, module, args, kwargs, output) -> None:
        if not self.active or not self._measuring():
            return
        x = args[0] if args else kwargs.get("input")
        reason = _dynamic_reason(module, x)
        if reason is not None:
            self._skip(layer, reason)
            return
        hx = args[1] if len(args) > 1 else kwargs.get("hx")
        out, state = output
        h_n, c_n = state if isinstance(state, tuple) else (state, None)
        slots = [i for i, t in enumerate((out, h_n, c_n)) if t is not None and t.requires_grad]
        if not slots:
            return
        tensors = [(out, h_n, c_n)[i] for i in slots]
        inputs = _time_major(module, x, hx)
        hidden = (out, out._version)  # the top layer's h_t, if still intact in backward
        hook = partial(self._on_grads, layer, inputs, hidden, slots)
        torch.autograd.graph.register_multi_grad_hook(tensors, hook, mode="all")

    def _on_grads(
        self, layer: Layer, inputs: tuple, hidden: tuple, slots: list[int], grads
    ) -> None:
        """Runs in backward once every output of the call has its gradient (or none)."""
        if not self.active:
            return
        x, hx, unbatched = inputs
        full = [None, None, None]
        for i, g in zip(slots, grads):
            full[i] = g
        grads = _grads_time_major(layer.module, tuple(full), unbatched, x.dtype)
        out, version = hidden
        hs = None
        if out._version == version:  # else modified in place: replay the layer instead
            hs = _grads_time_major(layer.module, (out, None, None), unbatched, x.dtype)[0]
        dh = hidden_grads(layer.module, x, hx, grads, hs)  # (T, B, H)
        norm = torch.linalg.vector_norm(dh, dim=(1, 2), dtype=torch.float64)  # (T,)
        self._add(layer.index, norm.square())

    def _add(self, index: int, sumsq: torch.Tensor) -> None:
        prev = self._sumsq.get(index)
        if prev is not None and prev.shape[0] < sumsq.shape[0]:
            prev, sumsq = sumsq, prev
        if prev is not None:
            sumsq = torch.cat([prev[: sumsq.shape[0]] + sumsq, prev[sumsq.shape[0] :]])
        self._sumsq[index] = sumsq

    def _skip(self, layer: Layer, reason: str) -> None:
        seen = self._skipped.setdefault(layer.index, [])
        if reason in seen:
            return
        seen.append(reason)
        warnings.warn(
            f"gradprobe: {NAME} of layer {layer.name!r} ({layer.type}) is not measured: "
            f"{reason}; its per-step delta_norm is still recorded",
            RuntimeWarning,
            stacklevel=3,
        )

    def take(self, unscale: torch.Tensor | float | None = None) -> dict[int, torch.Tensor]:
        """Layer index -> array of shape (T,): ||dC/dh_t|| of this step; resets.

        Args:
            unscale: None, or 1 / the loss scale of the backward (a GradScaler's), a float
                or a float64 0-d tensor: the norms are those of the unscaled loss.
        """
        sumsq, self._sumsq = self._sumsq, {}
        if unscale is None:
            return {index: s.sqrt() for index, s in sumsq.items()}
        return {index: s.sqrt() * unscale for index, s in sumsq.items()}

    def discard(self) -> None:
        """Forget what was measured (a step that is not kept)."""
        self._sumsq = {}

    def describe(self, layer: Layer) -> str | None:
        """What delta_norm_t means for this layer (layer_info), or why it is NaN."""
        if not isinstance(layer.module, nn.RNNBase):
            return None
        if layer.index in self._reasons:
            return f"not measured: {self._reasons[layer.index]}"
        n = layer.module.num_layers
        which = "the layer's" if n == 1 else f"the top layer's (of num_layers={n})"
        text = f"||dC/dh_t|| of {which} hidden state, through time; norm over batch and units"
        skipped = self._skipped.get(layer.index)
        return text if not skipped else f"{text}; calls not measured: {'; '.join(skipped)}"

    def __repr__(self) -> str:
        names = [layer.name for layer in self.layers if layer.index in self.indices]
        return f"ThroughTime({NAME} of {names}, not measured: {self._reasons | self._skipped})"
