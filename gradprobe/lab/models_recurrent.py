"""Recurrent classifiers: an Elman RNN, LSTM or GRU over sequences, then a linear head.

Layer names are what users of a record read (`rnn`, `head`), so they are fixed here.
"""

from __future__ import annotations

import torch
from torch import nn

from gradprobe.lab.init import init_model_
from gradprobe.lab.models_checks import _check_positive_ints

RECURRENT_KINDS: tuple[str, ...] = ("rnn", "lstm", "gru")

READOUTS = ("last", "all")  # the last step's hidden state, or every step's (copy_memory)


class RecurrentClassifier(nn.Module):
    """rnn over (B, T, F) sequences, then `head` on the last step's hidden state
    (readout="last") or on every step's (readout="all", for a target at every step)."""

    def __init__(self, rnn: nn.RNNBase, n_outputs: int, readout: str = "last"):
        super().__init__()
        if readout not in READOUTS:
            raise ValueError(f"readout={readout!r} is not one of: {', '.join(READOUTS)}")
        self.rnn = rnn
        self.head = nn.Linear(rnn.hidden_size, n_outputs)
        self.readout = readout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3:
            raise ValueError(f"expected input of shape (B, T, F), got {tuple(x.shape)}")
        out, _ = self.rnn(x)  # (B, T, H)
        if self.readout == "all":
            return self.head(out)  # (B, T, n_outputs)
        return self.head(out[:, -1])  # (B, n_outputs)

    def extra_repr(self) -> str:
        return f"readout={self.readout!r}"


def recurrent(
    kind: str,
    input_size: int,
    hidden_size: int,
    n_outputs: int,
    *,
    nonlinearity: str = "tanh",
    num_layers: int = 1,
    init: str | None = None,
    gain: float | None = None,
    bias_init: str | float | None = None,
    head_init: str | None = None,
    readout: str = "last",
    generator: torch.Generator | None = None,
) -> nn.Module:
    """A recurrent classifier / regressor for sequence tasks.

    Args:
        kind: "rnn" (Elman), "lstm" or "gru".
        input_size: features per time step.
        hidden_size: hidden units.
        n_outputs: outputs of the head.
        nonlinearity: "tanh" or "relu", for kind="rnn" only.
        num_layers: stacked recurrent layers.
        init: None keeps torch's default init; otherwise an initialiser applied per gate
            block to the recurrent matrices (and to the head, unless `head_init` is given).
        head_init: initialiser for the head; None means `init`, except for
            "scaled_identity" (square matrices only), where the head keeps torch's default.
        gain: multiplies the initial weights' standard deviation (with `init`).
        bias_init: bias mode (with `init`).
        readout: "last" reads the last step's hidden state; "all" applies the head at
            every step, output (B, T, n_outputs), for tasks with a target per step.
        generator: draw the initial weights from this generator (with `init`).

    Returns:
        `RecurrentClassifier` mapping (B, T, input_size) to (B, n_outputs) (or
        (B, T, n_outputs) with readout="all"); attributes `rnn` and `head`.
    """
    if kind not in RECURRENT_KINDS:
        raise ValueError(f"kind={kind!r} is not one of: {', '.join(RECURRENT_KINDS)}")
    if nonlinearity not in ("tanh", "relu") or (kind != "rnn" and nonlinearity != "tanh"):
        allowed = "tanh, relu" if kind == "rnn" else "tanh (its gates are fixed)"
        raise ValueError(f"nonlinearity={nonlinearity!r} for kind={kind!r}; allowed: {allowed}")
    _check_positive_ints(
        input_size=input_size, hidden_size=hidden_size, n_outputs=n_outputs, num_layers=num_layers
    )
    common = dict(num_layers=num_layers, batch_first=True)
    if kind == "rnn":
        rnn = nn.RNN(input_size, hidden_size, nonlinearity=nonlinearity, **common)
    else:
        rnn = (nn.LSTM if kind == "lstm" else nn.GRU)(input_size, hidden_size, **common)
    if init is None and (gain is not None or bias_init is not None):
        raise ValueError(f"gain={gain!r} / bias_init={bias_init!r} need an init; init is None")
    model = RecurrentClassifier(rnn, n_outputs, readout)
    if head_init is None and init != "scaled_identity":
        head_init = init
    for module, name in ((model.rnn, init), (model.head, head_init)):
        if name is not None:
            init_model_(module, name, gain=gain, bias=bias_init, generator=generator)
    return model
