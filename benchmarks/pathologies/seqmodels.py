"""Sequence model builders: recurrent classifiers with controlled recurrent weights, and a
small Transformer encoder."""

from __future__ import annotations

import torch
from torch import nn

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class SeqClassifier(nn.Module):
    """A one-layer recurrent net (batch first) and a Linear head.

    Args:
        cell: "rnn" (tanh), "lstm" or "gru".
        n_in, hidden, n_out: sizes.
        per_step: the head reads every step, output (B, T, n_out); else only the last
            step, output (B, n_out).
    """

    def __init__(self, cell: str, n_in: int, hidden: int, n_out: int, per_step: bool) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell={cell!r} is not one of: {', '.join(CELLS)}")
        self.rnn = CELLS[cell](n_in, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n_out)
        self.per_step = per_step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)  # (B, T, H)
        return self.head(out if self.per_step else out[:, -1])


def set_recurrent(rnn: nn.RNNBase, spectral_radius: float | None, forget_bias: float = 0.0):
    """Orthogonal W_hh blocks times `spectral_radius` (every singular value equals it, so
    Pascanu et al. 2013's bounds apply exactly), zero biases, LSTM forget-gate bias set.

    Args:
        rnn: an nn.RNN, nn.LSTM or nn.GRU with one layer.
        spectral_radius: the scale of each orthogonal block; None keeps torch's default.
        forget_bias: bias of the LSTM forget gate (Jozefowicz et al. 2015 recommend 1).
    """
    if spectral_radius is None:
        return rnn
    hidden = rnn.hidden_size
    with torch.no_grad():
        for block in rnn.weight_hh_l0.split(hidden, 0):
            nn.init.orthogonal_(block, gain=spectral_radius)
        nn.init.zeros_(rnn.bias_hh_l0)
        nn.init.zeros_(rnn.bias_ih_l0)
        if isinstance(rnn, nn.LSTM):  # gate order i, f, g, o
            rnn.bias_ih_l0[hidden : 2 * hidden] = forget_bias
    return rnn


class TransformerClassifier(nn.Module):
    """Linear embedding of each token, a learned position embedding, a 2-layer
    nn.TransformerEncoder (pre-norm, d=32, 4 heads), mean pooling and a Linear head."""

    def __init__(self, n_in: int, length: int, n_out: int, d: int = 32, n_layers: int = 2):
        super().__init__()
        self.embed = nn.Linear(n_in, d)
        self.pos = nn.Embedding(length, d)  # a submodule, so the probe sees it as a layer
        layer = nn.TransformerEncoderLayer(
            d, 4, dim_feedforward=2 * d, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.head = nn.Linear(d, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(x.shape[1], device=x.device)
        h = self.encoder(self.embed(x) + self.pos(positions))  # (B, T, d)
        return self.head(h.mean(1))
