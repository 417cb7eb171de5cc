"""Tiny updates after an oversized first one (the `nan` reproduction's broken run) and the
exp overflow behind a backward NaN, on synthetic Records shaped like that run's; the MSE
lint on a logistic or softmax written out by hand.

Each stall test has a twin that differs in one row or one column and must flip the advice,
so the tests fail both ways: a rule that never says "raise the learning rate" fails the
twin, one that always says it fails the stall.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradprobe.diagnose.diagnosis import diagnose
from gradprobe.diagnose.lints import lint
from gradprobe.diagnose.rules.update import find_stall
from gradprobe.diagnose.thresholds import Thresholds
from gradprobe.record import Record

TH = Thresholds()
LAYERS = ["fc1", "fc2", "fc3"]
N = 40
# The broken run (seed 0) as recorded: step 0, then every step after it.
FIRST_RATIO = [5.9e-3, 8.3e-2, 0.978]
LATER_RATIO = [3.5e-9, 4.4e-8, 4.2e-7]
FIRST_GRAD = [6.2e-2, 0.88, 4.59]
LATER_GRAD = [3.7e-8, 4.6e-7, 1.96e-6]
SATURATED = [0.0, 0.014, 1.0]  # after the first update; 0 at step 0


def record(first_ratio=FIRST_RATIO, later_sat=SATURATED, later_ratio=LATER_RATIO) -> Record:
    """784-1000-1000-10 sigmoid net, every step measured, loss flat at 0.9 after step 0."""
    info = [
        {"name": n, "type": "Linear", "activation": "Sigmoid", "weight_shapes": [[o, i]]}
        for n, (o, i) in zip(LAYERS, [(1000, 784), (1000, 1000), (10, 1000)])
    ]
    rows = lambda first, later: np.array([first] + [later] * (N - 1), dtype=np.float64)  # noqa: E731
    values = {
        "delta_norm": np.ones((N, 3)),  # flat depth: only the stall's rules are under test
        "update_ratio": rows(first_ratio, later_ratio),
        "grad_norm": rows(FIRST_GRAD, LATER_GRAD),
        "saturated_frac": rows([0.0, 0.0, 0.0], later_sat),
    }
    noise = np.random.default_rng(0).normal(0.0, 1e-4, N - 1)
    loss = np.concatenate([[1.3], 0.9 + noise])
    return Record(LAYERS, np.arange(N), values, step_values={"loss": loss}, layer_info=info)


def by_kind(rec) -> dict:
    return {f.kind: f for f in diagnose(rec)}


def raises_lr(findings) -> list[str]:
    return [f.kind for f in findings.values() if "raise the learning rate" in f.fix]


def test_saturation_after_a_large_first_update_names_the_first_step():
    found = by_kind(record())
    assert raises_lr(found) == []
    assert "update_too_small" not in found and "saturation" in found
    large = found["update_too_large"]
    assert (large.layers, large.steps, large.severity) == (("fc3",), (0,), "error")
    assert large.evidence["first_update"] == {"step": 0, "layer": "fc3", "update_ratio": 0.978}
    assert large.evidence["update_ratio_after"] == pytest.approx(LATER_RATIO[2])
    assert large.evidence["saturated_frac"] == {"fc3": 1.0}
    at, after = math.hypot(*FIRST_GRAD), math.hypot(*LATER_GRAD)
    assert large.evidence["grad_norm_drop"] == pytest.approx(after / at)
    assert "the update at step 0 rewrote 98% of fc3's weights" in large.cause
    assert "the units saturated (100% of fc3's units in their flat tails)" in large.cause
    assert f"the gradient norm fell {at / after:.1e}x" in large.cause
    assert large.fix.startswith("lower the learning rate (by up to 9.8e+02x")
    assert "cross-entropy on the logits" in large.fix
    plateau = found["loss_plateau"]
    assert plateau.cause == large.cause and plateau.fix == large.fix
    assert plateau.evidence["first_update"]["step"] == 0


def test_saturation_after_the_first_update_blames_that_update_not_the_init():
    sat = by_kind(record())["saturation"]
    assert sat.cause.startswith("the update at step 0 rewrote 98% of fc3's weights")
    assert "0% were saturated" in sat.cause and sat.fix.startswith("lower the learning rate")
    assert (sat.evidence["jump_step"], sat.evidence["jump_ratio"]) == (0, 0.978)
    # Saturated from the first step on: the initialisation (or the inputs) is the cause.
    rec = record()
    rec_values = {q: rec[q].copy() for q in ("delta_norm", "update_ratio", "grad_norm")}
    rec_values["saturated_frac"] = np.array([SATURATED] * N, dtype=np.float64)
    at_init = Record(
        LAYERS, np.arange(N), rec_values, step_values={"loss": rec.loss}, layer_info=rec.layer_info
    )
    sat = by_kind(at_init)["saturation"]
    assert sat.cause.startswith("pre-activations too large") and "jump_step" not in sat.evidence


def test_a_plain_too_small_learning_rate_still_says_raise_it():
    found = by_kind(record(first_ratio=LATER_RATIO, later_sat=[0.0, 0.0, 0.0]))
    assert sorted(raises_lr(found)) == ["loss_plateau", "update_too_small"]
    small = found["update_too_small"]
    assert small.cause.startswith("too small a learning rate")
    assert f"raise the learning rate by {1e-3 / LATER_RATIO[0]:.1e}x" in small.fix
    assert (
        "update_too_large" not in found and find_stall(record(LATER_RATIO, [0.0] * 3), TH) is None
    )


@pytest.mark.parametrize("scale, expected", [(1.0, "update_too_large"), (0.99, None)])
def test_the_first_update_counts_from_update_large(scale, expected):
    first = [r * scale for r in (0.0, 0.0, TH.update_large)]
    found = by_kind(record(first_ratio=first, later_sat=[0.0, 0.0, 0.0]))
    if expected:  # no unit fraction measured above its threshold: the gradient collapsed
        assert raises_lr(found) == [] and "update_too_small" not in found
        assert "the gradient collapsed" in found[expected].cause
    else:
        assert "update_too_large" not in found
        assert "raise the learning rate" in found["update_too_small"].fix


def test_saturated_output_without_a_large_step_names_the_saturation():
    found = by_kind(record(first_ratio=LATER_RATIO))
    small = found["update_too_small"]
    assert raises_lr(found) == [] and "update_too_large" not in found
    assert small.cause.startswith("saturated units, not too small a learning rate: 100% of fc3")
    assert small.evidence["saturated_frac"] == {"fc3": 1.0}
    assert found["loss_plateau"].cause == small.cause


def test_saturated_hidden_layer_under_a_moving_output_layer_is_the_learning_rate():
    # fc2 saturated, the best-fed fc3 above it is not: its tiny step is the learning rate's
    found = by_kind(record(first_ratio=LATER_RATIO, later_sat=[0.0, 0.95, 0.0]))
    assert "raise the learning rate" in found["update_too_small"].fix


def test_a_large_first_update_the_run_recovers_from_is_no_finding():
    found = by_kind(record(later_sat=[0.0] * 3, later_ratio=[1e-3, 2e-3, 3e-3]))
    assert not {"update_too_large", "update_too_small"} & set(found)


# -- the exp overflow behind a backward NaN --------------------------------------------
def nan_record(smallest=1.8e-296, first_ratio=(0.059, 0.64, 1.0)) -> Record:
    """The NaN run: finite step 0, a finite forward at step 1 whose backward is NaN at fc3."""
    info = [{"name": n, "type": "Linear", "activation": "Logistic"} for n in LAYERS]
    nan = np.nan
    values = {
        "delta_norm": np.array([[0.011, 0.052, 0.26], [nan] * 3, [nan] * 3]),
        "update_ratio": np.array([first_ratio, [nan] * 3, [nan] * 3]),
        "abs_min_nonzero": np.array(
            [[2.2e-2, 2.9e-2, 0.13], [1.5e-2, 8.3e-21, smallest], [nan] * 3]
        ),
        "grad_nonfinite": np.array([[0, 0, 0], [0, 0, 5], [nan] * 3]),
    }
    loss = np.array([1.3, 0.9, nan])
    return Record(LAYERS, np.arange(3), values, step_values={"loss": loss}, layer_info=info)


def nonfinite(rec):
    (f,) = [f for f in diagnose(rec) if f.kind == "nonfinite"]
    assert (f.steps, f.layers, f.evidence["where"]) == ((1,), ("fc3",), "backward")
    return f


def test_backward_nan_after_tiny_activations_is_an_exp_overflow():
    f = nonfinite(nan_record())
    assert f.cause.startswith("an overflow in exp (e.g. a hand-written sigmoid")
    assert "the update at step 0 rewrote 100% of fc3's weights" in f.cause
    assert "the activations reached 1.8e-296 at fc3 (step 1)" in f.cause
    assert f.evidence["smallest_activation"] == {"value": 1.8e-296, "layer": "fc3", "step": 1}
    assert f.evidence["largest_update_ratio"] == {"value": 1.0, "layer": "fc3", "step": 0}
    assert f.fix.startswith("use torch.sigmoid / F.log_softmax / a logits-based loss")
    assert "lower the learning rate" in f.fix and "gp.gradcheck" in f.fix


def test_either_sign_alone_names_the_overflow_and_neither_does_not():
    small_step = (1e-3, 1e-3, TH.update_large * 0.99)
    alone = nonfinite(nan_record(first_ratio=small_step))
    assert alone.cause.startswith("an overflow in exp") and "rewrote" not in alone.cause
    assert "lower the learning rate" not in alone.fix
    big_step = nonfinite(nan_record(smallest=TH.tiny_activation * 1.01))
    assert big_step.cause.startswith("an overflow in exp") and "reached" not in big_step.cause
    neither = nonfinite(nan_record(smallest=TH.tiny_activation * 1.01, first_ratio=small_step))
    assert neither.cause.startswith("a derivative that is infinite where it was taken")
    assert "exp" not in neither.fix and "smallest_activation" not in neither.evidence


# -- the MSE lint sees a logistic or softmax written out ---------------------------------
class WrittenOut(nn.Module):
    """An activation given as a function of z, e.g. the nan reproduction's 1/(1+exp(-z))."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fn(z)


def softmax_by_hand(z):
    e = torch.exp(z - z.max(-1, keepdim=True).values)
    return e / e.sum(-1, keepdim=True)


@pytest.mark.parametrize(
    "fn, op",
    [
        (lambda z: 1.0 / (1.0 + torch.exp(-z)), "sigmoid"),
        (lambda z: torch.exp(z) / (1 + torch.exp(z)), "sigmoid"),
        (softmax_by_hand, "softmax"),
        (lambda z: z / (1 + z.abs()), None),  # softsign: a division, no exp
        (torch.exp, None),
    ],
)
def test_mse_lint_on_a_written_out_squashing_output(fn, op):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 3), WrittenOut(fn))
    x, y = torch.randn(8, 5), F.one_hot(torch.randint(0, 3, (8,)), 3).float()
    found = lint(model, (x, y), F.mse_loss)
    if op is None:
        assert found == []
        return
    (f,) = found
    assert f.kind == "lint_mse_for_classification" and f.evidence["written_out"] is True
    assert f"over a written-out {op} output" in f.cause and "overflows exp" in f.fix
    if f.evidence["output_op"] == "ReciprocalBackward0":  # it keeps a = its result
        with torch.no_grad():
            a = model(x).double()
        assert f.evidence["mean_output_derivative"] == pytest.approx(float((a * (1 - a)).mean()))


def test_mse_lint_on_torch_sigmoid_is_not_written_out():
    model = nn.Sequential(nn.Linear(5, 3), nn.Sigmoid())
    x, y = torch.randn(8, 5), F.one_hot(torch.randint(0, 3, (8,)), 3).float()
    (f,) = lint(model, (x, y), F.mse_loss)
    assert f.evidence["written_out"] is False and "written-out" not in f.cause
