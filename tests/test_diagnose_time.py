"""Time rules on synthetic per-time-step delta norms (series delta_norm_t)."""

from __future__ import annotations

import numpy as np
import pytest

from gradprobe.diagnose.diagnosis import diagnose
from gradprobe.diagnose.thresholds import Thresholds
from gradprobe.record import Record

TH = Thresholds()
LAYERS = ["embed", "rnn", "head"]


def through_time(
    gain: float,
    T: int = 20,
    n_steps: int = 10,
    rnn_type: str = "RNN",
    noisy_step: int | None = None,
) -> Record:
    """||dC/dh_t|| = gain^(T-1-t) at the recurrent layer, NaN for the others; healthy depth."""
    norms = np.full((n_steps, 3, T), np.nan)
    norms[:, 1, :] = gain ** (T - 1 - np.arange(T))
    if noisy_step is not None:
        norms[noisy_step, 1, :] = 1.0  # one step where the gradient is flat in time
    info = [
        {"name": "embed", "type": "Embedding", "activation": None, "weight_shapes": [[100, 16]]},
        {"name": "rnn", "type": rnn_type, "activation": None, "weight_shapes": [[16, 16]]},
        {"name": "head", "type": "Linear", "activation": None, "weight_shapes": [[4, 16]]},
    ]
    delta = np.tile([4.0, 4.0, 2.0], (n_steps, 1))
    return Record(
        LAYERS,
        np.arange(n_steps),
        {"delta_norm": delta},
        layer_info=info,
        series={"delta_norm_t": norms},
    )


def test_vanishing_over_time_just_below_and_above():
    T = 20
    (f,) = diagnose(through_time((TH.time_vanish_ratio * 0.98) ** (1 / (T - 1)), T))
    assert (f.kind, f.axis, f.layers, f.severity) == (
        "vanishing_gradient",
        "time",
        ("rnn",),
        "warning",
    )
    assert f.evidence["total_ratio"] == pytest.approx(TH.time_vanish_ratio * 0.98)
    assert f.evidence["time_range"] == "t=0..t=19" and f.evidence["n_time_steps"] == T - 1
    assert diagnose(through_time((TH.time_vanish_ratio * 1.02) ** (1 / (T - 1)), T)) == []
    assert str(f).startswith("vanishing_gradient along time at rnn (steps 0-4): x0.78 per time")


def test_exploding_over_time_and_error_severity():
    T = 30
    (f,) = diagnose(through_time((TH.time_explode_ratio_error * 1.05) ** (1 / (T - 1)), T))
    assert (f.kind, f.axis, f.severity) == ("exploding_gradient", "time", "error")
    assert "clip gradients at 1.0" in f.fix
    assert diagnose(through_time((TH.time_explode_ratio * 0.95) ** (1 / (T - 1)), T)) == []


def test_gated_layers_get_the_forget_gate_fix():
    (f,) = diagnose(through_time(0.5, rnn_type="LSTM"))
    assert f.severity == "error" and "forget-gate bias to 1" in f.fix
    (f,) = diagnose(through_time(0.5, rnn_type="RNN"))
    assert "use an LSTM or GRU" in f.fix


def test_one_noisy_step_does_not_change_the_gain():
    (f,) = diagnose(through_time(0.7, noisy_step=2))
    assert f.evidence["gain_per_time_step"] == pytest.approx(0.7)


def test_no_series_or_short_sequences_give_nothing():
    rec = through_time(1e-3, T=2)  # one time link is below min_time_steps
    assert diagnose(rec) == []
    assert [f.axis for f in diagnose(rec, min_time_steps=1)] == ["time"]
