"""The recurrences of nn.RNN, nn.LSTM and nn.GRU, unrolled one time step at a time.

The fused RNN kernel carries dC/dh_t backwards through time inside itself: that total
derivative never appears in the autograd graph, only the direct part that arrives at the
`output` tensor. This module replays the top layer's forward with the equations of the
PyTorch documentation (torch.nn.RNN, LSTM, GRU), on detached copies and the module's own
weights, so that autograd gives dC/dh_t for every t. Maths only; bookkeeping is in
gradprobe.probe.through_time.

All tensors here are time-major and batched: x (T, B, I), h (B, H).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from gradprobe.probe.lstm_bptt import lstm_hidden_grads

MODES = ("RNN_TANH", "RNN_RELU", "LSTM", "GRU")


def unsupported_reason(module: nn.RNNBase) -> str | None:
    """Why the unrolled replay cannot reproduce this module (None: it can)."""
    if module.mode not in MODES:
        return f"mode={module.mode!r} is not one of: {', '.join(MODES)}"
    if module.bidirectional:
        return "bidirectional=True is not supported (h_t of two directions)"
    if getattr(module, "proj_size", 0) > 0:
        return f"proj_size={module.proj_size} is not supported (only proj_size=0)"
    return None


def layer_weights(module: nn.RNNBase, k: int) -> tuple[torch.Tensor, ...]:
    """(W_ih, W_hh, b_ih, b_hh) of stacked layer k, detached; biases None when bias=False."""
    names = (f"weight_ih_l{k}", f"weight_hh_l{k}", f"bias_ih_l{k}", f"bias_hh_l{k}")
    n = 4 if module.bias else 2
    weights = [getattr(module, name).detach() for name in names[:n]]
    return (*weights, *([None] * (4 - n)))


def _tanh_step(gx, gh, h, c):
    return torch.tanh(gx + gh), None


def _relu_step(gx, gh, h, c):
    return torch.relu(gx + gh), None


def _lstm_step(gx, gh, h, c):
    i, f, g, o = (gx + gh).chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def _gru_step(gx, gh, h, c):
    x_r, x_z, x_n = gx.chunk(3, dim=-1)
    h_r, h_z, h_n = gh.chunk(3, dim=-1)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)  # r multiplies W_hn h + b_hn, as torch documents
    return (1 - z) * n + z * h, None


_STEPS = {"RNN_TANH": _tanh_step, "RNN_RELU": _relu_step, "LSTM": _lstm_step, "GRU": _gru_step}


def run_layer(
    mode: str, x: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor | None, weights: tuple
) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """One stacked layer over the sequence.

    Args:
        mode: one of MODES.
        x: array of shape (T, B, I), the layer's input.
        h0, c0: arrays of shape (B, H), the initial state (c0 None unless LSTM).
        weights: (W_ih, W_hh, b_ih, b_hh) as from layer_weights.

    Returns:
        the hidden states h_0..h_{T-1} (each (B, H)), and the last cell state (LSTM).
    """
    w_ih, w_hh, b_ih, b_hh = weights
    step = _STEPS[mode]
    gx = F.linear(x, w_ih, b_ih)  # (T, B, G): the input part of every step at once
    h, c, hs = h0, c0, []
    for t in range(x.shape[0]):
        h, c = step(gx[t], F.linear(h, w_hh, b_hh), h, c)
        hs.append(h)
    return hs, c


def top_layer_input(module: nn.RNNBase, x: torch.Tensor, h0s, c0s) -> torch.Tensor:
    """The input (T, B, H) of the top stacked layer, replayed without autograd."""
    with torch.no_grad():
        for k in range(module.num_layers - 1):
            c0 = None if c0s is None else c0s[k]
            hs, _ = run_layer(module.mode, x, h0s[k], c0, layer_weights(module, k))
            x = torch.stack(hs)
    return x


def hidden_grads(
    module: nn.RNNBase, x: torch.Tensor, hx: tuple, grads: tuple, hs: torch.Tensor | None = None
) -> torch.Tensor:
    """dC/dh_t of the top stacked layer for every t, through every later time step.

    Args:
        module: the recurrent module (unsupported_reason(module) is None).
        x: array of shape (T, B, I), the module's input.
        hx: (h0, c0): arrays of shape (num_layers, B, H); c0 None unless LSTM.
        grads: (dC/d output (T, B, H), dC/d h_n (num_layers, B, H), dC/d c_n); each may
            be None where that output received no gradient.
        hs: the module's output (T, B, H), the top layer's hidden states, when they are
            known to be intact: an LSTM then takes the hand-written backward
            (gradprobe.probe.lstm_bptt), with no replay under autograd.

    Returns:
        array of shape (T, B, H): the total derivative of the loss with respect to the
        top layer's hidden state at each time step.
    """
    h0s, c0s = hx
    top = module.num_layers - 1
    x_top = top_layer_input(module, x, h0s, c0s)
    if hs is not None and module.mode == "LSTM":
        g_out, g_hn, g_cn = grads
        top_grads = (g_out, *(None if g is None else g[top] for g in (g_hn, g_cn)))
        weights = layer_weights(module, top)
        return lstm_hidden_grads(x_top, h0s[top], c0s[top], hs, weights, top_grads)
    with torch.enable_grad():
        h0 = h0s[top].detach().requires_grad_(True)  # a leaf: every h_t joins the graph
        c0 = None if c0s is None else c0s[top].detach()
        hs, c_last = run_layer(module.mode, x_top, h0, c0, layer_weights(module, top))
        pairs = [(torch.stack(hs), grads[0])]
        pairs += [(hs[-1], None if grads[1] is None else grads[1][top])]
        pairs += [(c_last, None if grads[2] is None else grads[2][top])]
        pairs = [(out, g) for out, g in pairs if out is not None and g is not None]
        if not pairs:
            return torch.zeros_like(torch.stack(hs)).detach()
        outs, outs_grads = zip(*pairs)
        dh = torch.autograd.grad(outs, hs, outs_grads, allow_unused=True)
    return torch.stack([torch.zeros_like(h) if g is None else g for h, g in zip(hs, dh)])
