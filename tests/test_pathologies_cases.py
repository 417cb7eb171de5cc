"""The benchmark's labels hold in the raw numbers of the records, independently of any
diagnosis rule: each check reads the Record (or autograd) directly."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import gradprobe as gp
from benchmarks.pathologies import evidence as ev
from benchmarks.pathologies.case import KINDS, label
from benchmarks.pathologies.cases import BY_NAME, CASES, select


@pytest.fixture(scope="module")
def records():
    """Build each case used below once; returns name -> Record."""
    names = [
        "sigmoid_deep_nielsen",
        "relu_large_init",
        "relu_bn_50",
        "relu_dead_bias",
        "log_softmax_nan",
        "lr_too_small_sgd",
        "lr_too_large_linear",
        "rnn_vanish_time",
        "rnn_explode_time",
        "relu_he_mlp",
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {name: BY_NAME[name].build().record for name in names}


def first_over_last(rec: gp.Record) -> np.ndarray:
    """Array of shape (n_steps,): delta_norm of the first layer over that of the last."""
    delta = rec["delta_norm"]
    return delta[:, 0] / delta[:, -1]


def test_registry_has_the_required_cases():
    sick = [c for c in CASES if not c.healthy]
    healthy = {c.name for c in CASES if c.healthy}
    assert len(sick) >= 20 and len(healthy) >= 8
    assert {"relu_he_mlp", "residual_mlp", "small_cnn", "lstm_sensible"} <= healthy
    assert {"transformer_encoder", "shallow_tanh", "shallow_sigmoid"} <= healthy
    keys = {label(k) for k in KINDS} | {label(k, "time") for k in KINDS}
    for case in CASES:
        assert case.expected <= keys and case.either <= keys, case
    with pytest.raises(KeyError, match="no case named"):
        select(["sigmoid_deeep"])


def test_deep_sigmoid_vanishes_unsaturated_on_a_plateau(records):
    rec = records["sigmoid_deep_nielsen"]
    assert np.all(first_over_last(rec) < 1e-2)
    sat = rec["saturated_frac"]
    assert np.nanmax(sat) < 0.1  # vanishing from sigmoid' <= 1/4, not from saturation
    assert abs(ev.late_improvement(rec)) < 0.01 and np.nanmin(rec.loss[10:]) > 2.2


def test_large_relu_init_and_batchnorm_explode(records):
    assert np.all(first_over_last(records["relu_large_init"]) > 1e2)
    bn = records["relu_bn_50"]
    norms = [i for i, info in enumerate(bn.layer_info) if info["type"] == "BatchNorm1d"]
    delta = bn["delta_norm"][:, norms]
    assert np.all(delta[:, 0] / delta[:, -1] > 1e2)


def test_dead_bias_kills_most_first_layer_units(records):
    dead = records["relu_dead_bias"]["dead_frac"][:, 0]
    assert np.nanmin(dead) > 0.5


def test_log_softmax_goes_nonfinite_in_the_loss(records):
    where = records["log_softmax_nan"].first_nonfinite()
    assert where is not None and where["step"] == 0 and where["where"] == "loss"


def test_learning_rates_show_in_the_update_ratio(records):
    small = records["lr_too_small_sgd"]["update_ratio"]
    assert np.nanmax(small) < 1e-5
    large = records["lr_too_large_linear"]
    assert np.nanmin(large["update_ratio"]) > 1e-1
    assert large.loss[-1] > 1e3 * large.loss[0] and np.isfinite(large.loss).all()


@pytest.mark.parametrize(
    "name, low, high", [("rnn_vanish_time", 0, 1e-2), ("rnn_explode_time", 1e2, np.inf)]
)
def test_recurrent_gradient_through_time(records, name, low, high):
    series = records[name].series["delta_norm_t"][:, 0]  # (n_steps, T) of the RNN layer
    ratio = series[:, 0] / series[:, -1]
    assert np.all((ratio > low) & (ratio < high))


def test_healthy_mlp_is_balanced_and_learns(records):
    rec = records["relu_he_mlp"]
    gains = ev.depth_gains(rec)
    assert np.all((gains > 0.1) & (gains < 10))
    assert np.nanmax(rec["dead_frac"]) < 0.4 and ev.late_improvement(rec) > 0.1


def test_evidence_against_hand_computed_values():
    delta = np.array([[1e-4, 1e-2, 1.0], [3e-4, 3e-2, 2.0], [np.nan, 1.0, 1.0]])
    loss = np.array([2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.9, 0.9, 0.9, 0.9, 0.9, 0.8])
    rec = gp.Record(
        ["a", "b", "c", "never_ran"],
        np.arange(12),
        {"delta_norm": np.column_stack([np.resize(delta, (12, 3)), np.full(12, np.nan)])},
        step_values={"loss": loss},
        series={"delta_norm_t": np.resize([1e-3, 0.1, 1.0], (12, 4, 3))},
    )
    gains = ev.depth_gains(rec)  # medians of [1e-4, 1.5e-4, nan, ...] and [1e-2, 1.5e-2, 1, ...]
    np.testing.assert_allclose(gains, [1.25e-4, 1.5e-2, 1.0])
    assert ev.time_gain(rec) == pytest.approx(1e-3)
    # medians: loss[6:11] = 0.9, loss[-5:] = 0.9 -> no late improvement
    assert ev.late_improvement(rec) == pytest.approx(0.0)
