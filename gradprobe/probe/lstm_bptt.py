"""dC/dh_t of an LSTM layer by backpropagation through time written out by hand.

The fused LSTM kernel already computed every hidden state h_t (the module's output),
so the gates of all time steps come from two batched matrix products; only the cell
state recurrence c_t = f_t c_{t-1} + i_t g_t and the backward recurrence run step by
step, a few small ops each. On the 200-step LSTM of benchmarks/overhead.py this takes
~10% of the time of replaying the layer under autograd (gradprobe.probe.unroll), which
remains the path for RNN and GRU layers and for outputs modified in place.

Equations (torch.nn.LSTM's documentation, gates in the order i, f, g, o):
    z_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh,   i, f, o = sigmoid(.), g = tanh(.)
    c_t = f_t c_{t-1} + i_t g_t,   h_t = o_t tanh(c_t)
and, with d the total derivative of the loss C,
    dh_t = dC/d output_t + dz_{t+1} W_hh          (dh_{T-1} gets dC/dh_n instead)
    dc_t = dh_t o_t (1 - tanh^2 c_t) + dc_{t+1} f_{t+1}        (dc_{T-1}: + dC/dc_n)
    dz_t = [dc_t g_t i_t (1 - i_t), dc_t c_{t-1} f_t (1 - f_t),
            dc_t i_t (1 - g_t^2), dh_t tanh(c_t) o_t (1 - o_t)]
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def _gates(x: torch.Tensor, h_prev: torch.Tensor, weights: tuple) -> tuple:
    """i, f, g, o of every time step, each (T, B, H), from inputs and previous states."""
    w_ih, w_hh, b_ih, b_hh = weights
    z = F.linear(x, w_ih, b_ih) + F.linear(h_prev, w_hh, b_hh)  # (T, B, 4H)
    i, f, g, o = z.chunk(4, dim=-1)
    return torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)


def _cells(c0: torch.Tensor, f: torch.Tensor, ig: torch.Tensor) -> torch.Tensor:
    """c_t = f_t c_{t-1} + i_t g_t for every t, shape (T, B, H)."""
    c, cells = c0, []
    for t in range(f.shape[0]):
        c = torch.addcmul(ig[t], f[t], c)
        cells.append(c)
    return torch.stack(cells)


@torch.no_grad()
def lstm_hidden_grads(
    x: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor, hs: torch.Tensor, weights: tuple, grads
) -> torch.Tensor:
    """Total dC/dh_t of one LSTM layer for every t.

    Args:
        x: array of shape (T, B, I), the layer's input.
        h0, c0: arrays of shape (B, H), its initial state.
        hs: array of shape (T, B, H), its hidden states h_0..h_{T-1} (the output).
        weights: (W_ih, W_hh, b_ih, b_hh); biases may be None.
        grads: (dC/d output (T, B, H), dC/dh_n (B, H), dC/dc_n (B, H)), each may be None.

    Returns:
        array of shape (T, B, H).
    """
    i, f, g, o = _gates(x, torch.cat([h0.unsqueeze(0), hs[:-1]]), weights)
    cells = _cells(c0, f, i * g)
    c_prev = torch.cat([c0.unsqueeze(0), cells[:-1]])
    tanh_c = torch.tanh(cells)
    to_dc = o * (1 - tanh_c * tanh_c)  # dc_t / dh_t along h_t = o_t tanh(c_t)
    to_dz = torch.cat(
        [g * i * (1 - i), c_prev * f * (1 - f), i * (1 - g * g), tanh_c * o * (1 - o)], -1
    )
    g_out, g_hn, g_cn = grads
    dh_next = torch.zeros_like(h0) if g_hn is None else g_hn
    dc_next = torch.zeros_like(c0) if g_cn is None else g_cn
    w_hh = weights[1]
    out = [h0] * hs.shape[0]
    for t in range(hs.shape[0] - 1, -1, -1):
        dh = dh_next if g_out is None else dh_next + g_out[t]
        dc = torch.addcmul(dc_next, dh, to_dc[t])
        dz = torch.cat([dc, dc, dc, dh], -1).mul_(to_dz[t])  # (B, 4H)
        dh_next = dz @ w_hh  # (B, H): through z_t = ... + W_hh h_{t-1}
        dc_next = dc * f[t]
        out[t] = dh
    return torch.stack(out)
