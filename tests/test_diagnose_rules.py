"""Non-finite, loss, update-ratio and unit rules on synthetic Records, at their thresholds."""

from __future__ import annotations

import numpy as np
import pytest

from gradprobe.diagnose.diagnosis import diagnose
from gradprobe.diagnose.thresholds import Thresholds
from gradprobe.record import Record

TH = Thresholds()
NAN = np.nan
LAYERS = ["fc1", "fc2", "fc3"]


def record(n_steps=40, values=None, loss=None, activation="relu", global_norm=None) -> Record:
    """Healthy depth (equal per-unit deltas) plus the given quantities."""
    info = [
        {
            "name": name,
            "type": "Linear",
            "activation": activation if i < 2 else None,
            "weight_shapes": [[16, 16]],
        }
        for i, name in enumerate(LAYERS)
    ]
    vals = {"delta_norm": np.ones((n_steps, 3)), **(values or {})}
    step_values = {}
    if loss is not None:
        step_values["loss"] = loss
    if global_norm is not None:
        step_values["global_grad_norm"] = global_norm
    return Record(LAYERS, np.arange(n_steps), vals, step_values=step_values, layer_info=info)


def kinds(rec, **th) -> list[str]:
    return sorted(f.kind for f in diagnose(rec, **th))


def detail(value_per_layer, n_steps=40, every=10) -> np.ndarray:
    """A detail-step quantity: the values on every 10th step, NaN elsewhere."""
    out = np.full((n_steps, 3), NAN)
    out[::every] = value_per_layer
    return out


# -- non-finite ----------------------------------------------------------------------------
def test_nonfinite_after_growth_blames_the_learning_rate():
    loss = np.geomspace(2.0, 2e4, 12)
    loss = np.concatenate([loss, [np.inf, NAN, NAN]])
    grad = np.geomspace(1.0, 1e5, 15)
    grad[12:] = np.inf
    delta = np.ones((15, 3))
    delta[12:] = np.inf
    rec = record(15, {"delta_norm": delta}, loss=loss, global_norm=grad)
    (f,) = [f for f in diagnose(rec) if f.kind == "nonfinite"]
    assert f.severity == "error" and f.steps == (12,)
    assert f.evidence["where"] == "loss" and f.layers == ()
    assert f.cause.startswith("too large a learning rate") and "lower the learning rate" in f.fix
    assert f.evidence["grad_norm_growth_before"] >= TH.growth_before_nonfinite


def test_nonfinite_forward_without_growth_is_an_overflow():
    act_nonfinite = np.zeros((20, 3))
    act_nonfinite[7, 1] = 5
    rec = record(20, {"act_nonfinite": act_nonfinite}, loss=np.full(20, 2.3))
    (f,) = diagnose(rec)
    assert (f.kind, f.layers, f.steps, f.evidence["where"]) == (
        "nonfinite",
        ("fc2",),
        (7,),
        "forward",
    )
    assert "log of a softmax" in f.cause and "F.log_softmax" in f.fix
    assert str(f).startswith("nonfinite at fc2 (step 7): first NaN/Inf at step 7 in the forward")


def test_nonfinite_backward_without_growth_points_to_gradcheck():
    grad_nonfinite = np.zeros((20, 3))
    grad_nonfinite[9, 0] = 1
    (f,) = diagnose(record(20, {"grad_nonfinite": grad_nonfinite}, loss=np.full(20, 2.3)))
    assert f.evidence["where"] == "backward" and "gp.gradcheck" in f.fix


def test_rules_other_than_nonfinite_read_only_the_steps_before_it():
    dead = detail([0.95, 0.95, 0.0])
    act_nonfinite = np.zeros((40, 3))
    act_nonfinite[5, 0] = 1  # NaN at step 5: the dead units (from step 10 on) come after
    dead[0] = 0.0
    assert kinds(record(values={"dead_frac": dead, "act_nonfinite": act_nonfinite})) == [
        "nonfinite"
    ]


# -- loss ----------------------------------------------------------------------------------
def test_divergence_just_above_and_below_the_factor():
    start = np.full(10, 1.0)
    for factor, expected in (
        (TH.diverge_factor * 1.01, ["loss_divergence"]),
        (TH.diverge_factor * 0.99, []),
    ):
        rec = record(20, loss=np.concatenate([start, np.full(10, factor)]))
        assert [k for k in kinds(rec) if k != "loss_plateau"] == expected


def test_divergence_right_from_the_start_and_before_a_nan():
    # the loss blows up at step 1 and is NaN from step 8: 7 finite losses
    loss = np.concatenate([[2.3], np.geomspace(30, 1e9, 7), np.full(12, NAN)])
    grad = np.concatenate([np.ones(8), np.full(12, NAN)])
    (f,) = [
        f for f in diagnose(record(20, loss=loss, global_norm=grad)) if f.kind == "loss_divergence"
    ]
    assert f.evidence["start_loss"] == pytest.approx(30.0)  # median of the first 3
    assert f.severity == "error" and f.steps[0] == 1


def test_divergence_after_progress_counts_from_the_lowest_point():
    loss = np.concatenate([np.full(10, 2.0), np.full(10, 0.2), np.full(10, 1.5)])
    (f,) = diagnose(record(30, loss=loss))
    assert f.kind == "loss_divergence" and f.severity == "error"
    assert f.evidence["lowest_loss"] == pytest.approx(0.2)
    assert f.evidence["peak_loss"] == pytest.approx(1.5)
    # noise near zero is not divergence: 0.001 -> 0.003 gives back a sliver of the progress
    loss = np.concatenate([np.full(10, 2.0), np.full(10, 0.001), np.full(10, 0.003)])
    assert kinds(record(30, loss=loss)) == []


def test_divergence_ignores_one_noisy_loss():
    loss = np.linspace(1.0, 0.4, 30)
    loss[15] = 100.0
    assert kinds(record(30, loss=loss)) == []


def test_a_spike_the_run_recovers_from_is_not_divergence():
    # the demo's ReLU net: 2.5 -> 0.7, a spike to 1.6 for a dozen steps, then down to 0.05
    spike = np.concatenate([np.full(10, 2.5), np.full(10, 0.7), np.full(12, 1.6)])
    recovered = np.concatenate([spike, np.full(10, 0.05)])
    assert kinds(record(42, loss=recovered)) == []
    # the same spike at the end of the record is still divergence
    assert "loss_divergence" in kinds(record(32, loss=spike))
    # unstable and ending above where it started (lr 10 on tanh): divergence
    unstable = np.concatenate([[2.3, 1.9], np.full(10, 20.0), np.tile([3.0, 5.0], 10)])
    assert "loss_divergence" in kinds(record(32, loss=unstable))


def plateau_record(change: float, best_update: float = 1e-3, n: int = 40) -> Record:
    """Loss 2.0 until the last quarter, then 2.0 * (1 - change); update ratios with the
    best-fed layer at `best_update`."""
    loss = np.full(n, 2.0)
    loss[-(n // 4) :] = 2.0 * (1 - change)
    ratio = detail([best_update / 10, best_update, best_update / 2], n_steps=n)
    return record(n, {"update_ratio": ratio}, loss=loss)


def test_plateau_just_above_and_below_the_relative_change():
    assert kinds(plateau_record(TH.plateau_rel * 0.9)) == ["loss_plateau"]
    assert kinds(plateau_record(-TH.plateau_rel * 0.9)) == ["loss_plateau"]
    assert kinds(plateau_record(TH.plateau_rel * 1.1)) == []
    assert kinds(plateau_record(-TH.plateau_rel * 1.1)) == []


def test_plateau_only_far_from_zero_and_below_divergence():
    # converged: flat at 0.05 after falling from 2.3
    loss = np.concatenate([np.geomspace(2.3, 0.05, 20), np.full(20, 0.05)])
    assert kinds(record(40, loss=loss)) == []
    # just above / below plateau_floor x the starting loss
    for level, expected in (
        (TH.plateau_floor * 1.05, ["loss_plateau"]),
        (TH.plateau_floor * 0.95, []),
    ):
        loss = np.concatenate([np.full(5, 1.0), np.full(35, level)])
        assert kinds(record(40, loss=loss)) == expected
    # a loss flat at 3x where it started has diverged, it is not on a plateau
    loss = np.concatenate([np.full(5, 1.0), np.full(35, 3.0)])
    assert kinds(record(40, loss=loss)) == ["loss_divergence"]


def test_plateau_cause_from_the_best_fed_layer():
    (f,) = diagnose(plateau_record(0.0, TH.plateau_update * 0.9), update_small=1e-9)
    assert f.kind == "loss_plateau" and "even the best-fed layer moves by" in f.cause
    assert f.fix == "raise the learning rate by 1.1e+02x"
    (f,) = diagnose(plateau_record(0.0, TH.plateau_update * 1.1))
    assert f.cause.startswith("the gradient does not move the loss")


def test_plateau_needs_enough_logged_losses():
    n = TH.plateau_min_points * 4 - 1
    assert kinds(plateau_record(0.0, n=n)) == []
    assert kinds(plateau_record(0.0, n=n + 1)) == ["loss_plateau"]


# -- update ratio ----------------------------------------------------------------------------
def test_update_too_large_per_layer_just_above_and_below():
    ratio = detail([TH.update_large * 1.1, TH.update_large * 0.9, 1e-3])
    (f,) = diagnose(record(values={"update_ratio": ratio}))
    assert (f.kind, f.layers, f.severity) == ("update_too_large", ("fc1",), "warning")
    assert f.evidence["update_ratio"] == pytest.approx({"fc1": TH.update_large * 1.1})
    assert f.fix.startswith("lower the learning rate by 1.1e+02x")


def test_update_too_small_needs_every_layer_below():
    small = TH.update_small * 0.9
    (f,) = diagnose(record(values={"update_ratio": detail([small, small, small / 10])}))
    assert f.kind == "update_too_small" and f.layers == ("fc1", "fc2", "fc3")
    assert f.fix.startswith("raise the learning rate by 1.1e+03x")
    # slow lower layers under a healthy top (a vanishing gradient) are not a small lr
    assert kinds(record(values={"update_ratio": detail([small, small, 1e-3])})) == []
    assert kinds(record(values={"update_ratio": detail([TH.update_small * 1.1] * 3)})) == []


def test_update_needs_sustained_measurements():
    ratio = detail([1.0, 1e-3, 1e-3])
    ratio[10:, 0] = NAN  # fc1 measured once, the others four times
    assert kinds(record(values={"update_ratio": ratio})) == []
    ratio[5, 0] = ratio[15, 0] = 1.0
    assert kinds(record(values={"update_ratio": ratio})) == ["update_too_large"]


def test_a_run_cut_short_by_a_nan_needs_fewer_measurements():
    ratio = detail([1.0, 1.0, 1.0])
    act_nonfinite = np.zeros((40, 3))
    act_nonfinite[9, 0] = 1  # only step 0's update ratio comes before the NaN
    assert kinds(record(values={"update_ratio": ratio, "act_nonfinite": act_nonfinite})) == [
        "nonfinite",
        "update_too_large",
    ]


# -- units ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("quantity", "activation", "kind", "warn", "error"),
    [
        ("saturated_frac", "tanh", "saturation", TH.saturated_frac, TH.saturated_frac_error),
        ("dead_frac", "relu", "dead_units", TH.dead_frac, TH.dead_frac_error),
    ],
)
def test_unit_fractions_at_their_thresholds(quantity, activation, kind, warn, error):
    def run(frac):
        rec = record(values={quantity: detail([frac, 0.0, 0.0])}, activation=activation)
        return diagnose(rec)

    (f,) = run(warn + 0.01)
    assert (f.kind, f.layers, f.severity) == (kind, ("fc1",), "warning")
    assert run(warn - 0.01) == []
    assert run(error + 0.01)[0].severity == "error"


def test_units_only_for_their_activations():
    frac = detail([0.95, 0.95, 0.95])
    assert kinds(record(values={"dead_frac": frac}, activation="tanh")) == []
    assert kinds(record(values={"saturated_frac": frac}, activation="relu")) == []


def test_units_late_window_when_units_die_during_training():
    dead = np.full((200, 3), NAN)
    dead[::10] = 0.0
    dead[120::10, 1] = 0.8  # 8 of the last 10 measurements
    rec = Record(LAYERS, np.arange(200), {"dead_frac": dead}, layer_info=record().layer_info)
    (f,) = diagnose(rec)
    assert f.kind == "dead_units" and f.layers == ("fc2",) and f.steps[-1] == 190


def test_dead_units_text_says_when_they_died():
    (f,) = diagnose(record(values={"dead_frac": detail([0.8, 0.0, 0.0])}))
    assert "from the first recorded step" in f.cause and "biases at 0" in f.fix


def test_healthy_record_gets_no_finding():
    loss = np.geomspace(2.3, 0.1, 40)
    values = {
        "update_ratio": detail([1e-3, 2e-3, 1e-3]),
        "dead_frac": detail([0.05, 0.1, 0.0]),
        "saturated_frac": detail([0.0, 0.0, 0.0]),
    }
    assert diagnose(record(values=values, loss=loss)) == []
