"""Sick along time: recurrent nets whose gradient vanishes or explodes through the steps.

Measured at init on a task whose loss reads only the last step, so the signal for the
first step must cross the whole sequence (rec.series["delta_norm_t"], shape
(n_steps, n_layers, T), is the total dC/dh_t the probe records for recurrent layers).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks.pathologies.case import Case, Outcome, at_init, label
from benchmarks.pathologies.data import first_token_task
from benchmarks.pathologies.seqmodels import SeqClassifier, set_recurrent

PASSES = 8
LENGTH = 40


def _recurrent(cell: str, radius: float, forget_bias: float, seed: int) -> Outcome:
    torch.manual_seed(seed)
    model = SeqClassifier(cell, 8, 32, 2, per_step=False)
    set_recurrent(model.rnn, radius, forget_bias)
    return at_init(model, first_token_task(LENGTH, seed=seed), F.cross_entropy, PASSES)


def rnn_vanish_time() -> Outcome:
    """tanh RNN, W_hh = 0.6 x orthogonal: below 1/gamma = 1, vanishing is guaranteed
    (Pascanu et al. 2013), at least 0.6 per step."""
    return _recurrent("rnn", 0.6, 0.0, 50)


def rnn_explode_time() -> Outcome:
    """tanh RNN, W_hh = 2.5 x orthogonal: well above 1/gamma."""
    return _recurrent("rnn", 2.5, 0.0, 51)


def lstm_vanish_time() -> Outcome:
    """LSTM with forget-gate bias -3: f ~ sigmoid(-3) = 0.05, the cell forgets at once."""
    return _recurrent("lstm", 1.0, -3.0, 52)


CASES = [
    Case("rnn_vanish_time", rnn_vanish_time, frozenset({label("vanishing_gradient", "time")}),
         "largest singular value of W_hh 0.6 < 1 over 40 steps"),
    Case("rnn_explode_time", rnn_explode_time, frozenset({label("exploding_gradient", "time")}),
         "singular values of W_hh 2.5 over 40 steps"),
    Case("lstm_vanish_time", lstm_vanish_time, frozenset({label("vanishing_gradient", "time")}),
         "forget gate ~0.05: the cell state carries nothing across steps"),
]  # fmt: skip
