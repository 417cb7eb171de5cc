"""Record.first_nonfinite: the first step, and where: forward, loss or backward."""

from __future__ import annotations

import numpy as np

from gradprobe.record import Record

NAN, INF = np.nan, np.inf
LAYERS = ["l0", "l1", "l2", "l3"]
N_STEPS = 6


def record(loss=None, **columns) -> Record:
    """A record of finite, measured values, with `columns` set as {quantity: {(i, j): x}}."""
    values = {
        "grad_norm": np.ones((N_STEPS, 4)),
        "delta_norm": np.ones((N_STEPS, 4)),
        "bias_grad_norm": np.full((N_STEPS, 4), NAN),  # layers without bias
        "grad_nonfinite": np.zeros((N_STEPS, 4)),
        "act_nonfinite": np.zeros((N_STEPS, 4)),
    }
    for name, cells in columns.items():
        values.setdefault(name, np.zeros((N_STEPS, 4)))
        for (i, j), x in cells.items():
            values[name][i, j] = x
    step_values = {} if loss is None else {"loss": np.asarray(loss, dtype=float)}
    return Record(LAYERS, np.arange(0, 10 * N_STEPS, 10), values, step_values=step_values)


def test_all_finite_is_none():
    assert record().first_nonfinite() is None
    assert record(loss=[1, 2, 3, 4, 5, 6]).first_nonfinite() is None


def test_nan_meaning_not_measured_is_no_evidence():
    # Loss logged every other step, a layer never measured: NaN is "not measured" here.
    loss = [1.0, NAN, 0.9, NAN, 0.8, NAN]
    rec = record(loss=loss, delta_norm={(i, 3): NAN for i in range(N_STEPS)})
    assert rec.first_nonfinite() is None
    # Logged once, at the first step: one value is no sign of a series measured each step.
    assert record(loss=[1.0, NAN, NAN, NAN, NAN, NAN]).first_nonfinite() is None


def test_forward_reports_first_layer_in_forward_order():
    rec = record(act_nonfinite={(3, 2): 5, (3, 1): 1, (4, 0): 2}, grad_nonfinite={(3, 3): 7})
    assert rec.first_nonfinite() == {"step": 30, "layer": "l1", "where": "forward"}


def test_loss_when_activations_are_finite():
    rec = record(loss=[1, 1, INF, NAN, NAN, NAN], grad_nonfinite={(2, 1): 3})
    assert rec.first_nonfinite() == {"step": 20, "layer": None, "where": "loss"}


def test_loss_going_nan_for_good_counts():
    rec = record(loss=[1, 1, 1, NAN, NAN, NAN])
    assert rec.first_nonfinite() == {"step": 30, "layer": None, "where": "loss"}


def test_backward_reports_first_layer_in_backward_order():
    rec = record(grad_nonfinite={(1, 0): 1, (1, 2): 4}, delta_norm={(2, 3): INF})
    assert rec.first_nonfinite() == {"step": 10, "layer": "l2", "where": "backward"}


def test_backward_from_norms_alone():
    inf_delta = record(delta_norm={(4, 1): INF}, grad_nonfinite={})
    assert inf_delta.first_nonfinite() == {"step": 40, "layer": "l1", "where": "backward"}
    went_nan = record(grad_norm={(i, 0): NAN for i in range(2, N_STEPS)})
    assert went_nan.first_nonfinite() == {"step": 20, "layer": "l0", "where": "backward"}
    bias = record(bias_grad_norm={(3, 2): -INF})
    assert bias.first_nonfinite() == {"step": 30, "layer": "l2", "where": "backward"}


def test_earliest_step_wins_over_kind():
    rec = record(act_nonfinite={(4, 0): 1}, grad_nonfinite={(2, 3): 1}, loss=[1, 1, 1, INF, 1, 1])
    assert rec.first_nonfinite() == {"step": 20, "layer": "l3", "where": "backward"}


def test_missing_quantities_are_skipped():
    rec = Record(["a", "b"], [0, 1], {"act_mean": [[0, 0], [0, 0]]}, step_values={"loss": [1, INF]})
    assert rec.first_nonfinite() == {"step": 1, "layer": None, "where": "loss"}
    assert Record([], [], {}).first_nonfinite() is None
