"""The `nan` reproduction (Stack Overflow 44686609), small: 100-unit layers, a few steps.

lr x width sets the first update's overshoot, so 100-unit layers at 10x the learning rate
behave like the original's 1,000-unit ones: the quadratic-cost sigmoid net stalls with
tiny activations, the hand-written logistic turns NaN, ReLU + He with cross-entropy learns.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

import gradprobe as gp
from gradprobe.lab.losses import make_loss
from gradprobe.lab.reproduce import nan
from gradprobe.lab.reproduce.nan import code_checks, lr_at, sweep
from gradprobe.lab.reproduce.nan_parts import (
    VARIANTS,
    DetailSchedule,
    Logistic,
    Variant,
    batches,
    load_split,
    make_network,
    train_variant,
)

requires_mnist = pytest.mark.usefixtures("mnist_source")
W = 100  # hidden units: a tenth of the original's, so 10x its learning rates (lr x width)
BROKEN = replace(VARIANTS["broken"], lr=30.0)
NAN = replace(VARIANTS["broken-nan"], lr=300.0)
FIX = VARIANTS["fix-relu-ce"]


@pytest.fixture(scope="module")
def split():
    from gradprobe.lab.datasets.mnist import find_mnist

    try:
        find_mnist()
    except FileNotFoundError as err:
        pytest.skip(f"real MNIST files not found: {' '.join(str(err).split())}")
    return load_split(500, 200)


@pytest.fixture(scope="module")
def broken_run(split, tmp_path_factory):
    out = tmp_path_factory.mktemp("broken")
    return train_variant(BROKEN, split, seed=0, steps=30, width=W, eval_every=10, run_dir=out)


@pytest.fixture(scope="module")
def nan_run(split, tmp_path_factory):
    out = tmp_path_factory.mktemp("nan")
    return train_variant(NAN, split, seed=0, steps=30, width=W, run_dir=out)


@pytest.fixture(scope="module")
def fix_run(split):
    return train_variant(FIX, split, seed=0, steps=50, width=W, eval_every=25)


def test_logistic_matches_sigmoid_and_overflows_to_nan_only_in_its_backward():
    z = torch.linspace(-700, 700, 2001, dtype=torch.float64, requires_grad=True)
    a = Logistic()(z)
    (g,) = torch.autograd.grad(a.sum(), z)
    s = torch.sigmoid(z.detach())
    np.testing.assert_allclose(a.detach().numpy(), s.numpy(), rtol=1e-12, atol=0)
    e = torch.exp(-z.detach().abs())
    exact = e / (1 + e) ** 2  # sigma'(z) in a form that never overflows
    # right to 1e-9 relative down to z = -354; below, (1 + e^-z)^2 overflows and the
    # derivative (< 1e-153) flushes to 0: an absolute error below 1e-150
    near = (z > -354).numpy()
    np.testing.assert_allclose(g.numpy()[near], exact.numpy()[near], rtol=1e-9, atol=0)
    assert (g - exact)[z <= -354].abs().max() < 1e-150
    far = torch.tensor([-710.0, -800.0], dtype=torch.float64, requires_grad=True)
    assert torch.equal(Logistic()(far), torch.zeros(2, dtype=torch.float64))
    assert torch.isnan(torch.autograd.grad(Logistic()(far).sum(), far)[0]).all()  # 0 x inf
    assert torch.autograd.grad(torch.sigmoid(far).sum(), far)[0].eq(0).all()  # torch's: 0


@requires_mnist
def test_broken_run_stalls_with_tiny_activations_the_probe_measures(split, broken_run):
    r = broken_run
    assert r.status == "done" and r.record.first_nonfinite() is None
    assert r.log10_min_activation < -20  # healthy sigmoid nets stay above ~1e-6
    assert r.final("val_accuracy") <= 0.2  # twice chance: no learning
    assert abs(r.finite_loss[-5:].mean() - r.finite_loss[-10:-5].mean()) < 1e-3  # flat
    assert "saturation" in r.kinds
    # oracle: the probe's abs_min_nonzero at step 0 is the smallest nonzero sigmoid output of
    # the same initial network on the same first batch, computed here by torch
    model = make_network(BROKEN, 0, width=W)
    idx = next(batches(len(split.x_train), BROKEN.batch_size, 1, 0))
    h, mins = split.x_train[idx], []
    for module in model:
        h = module(h)
        if isinstance(module, nn.Sigmoid):
            mins.append(float(h.detach()[h.detach() != 0].abs().min()))
    np.testing.assert_allclose(r.record["abs_min_nonzero"][0], mins, rtol=1e-12)
    assert gp.load(r.run_dir).status == "done"


@requires_mnist
def test_nan_run_fails_and_gradprobe_names_its_first_step_and_layer(split, nan_run):
    r = nan_run
    assert r.status == "failed" and "non-finite" in r.error
    bad = r.record.first_nonfinite()
    assert bad == {"step": 1, "layer": "fc3", "where": "backward"}
    found = [f for f in r.findings if f.kind == "nonfinite"]
    assert found and found[0].steps == (1,) and found[0].layers == ("fc3",)
    rec = gp.load(r.run_dir)
    assert rec.status == "failed" and rec.first_nonfinite() == bad
    # torch's sigmoid at the same settings: the same overshoot, no NaN
    same = train_variant(replace(NAN, logistic="torch"), split, seed=0, steps=5, width=W)
    assert same.status == "done" and same.record.first_nonfinite() is None


@requires_mnist
def test_gradcheck_passes_and_check_lints_the_quadratic_cost(split):
    x, y = split.x_train[:5], split.y_train[:5]
    for variant in (BROKEN, NAN):
        model = make_network(variant, 0, width=16)
        assert gp.gradcheck(model, (x, y), make_loss(variant.loss)).passed
    kinds = [f.kind for f in gp.check(make_network(BROKEN, 0, width=16), (x, y),
                                      make_loss("quadratic")).findings]  # fmt: skip
    assert "lint_mse_for_classification" in kinds
    fixed = gp.check(make_network(FIX, 0, width=16), (x, y), make_loss(FIX.loss))
    assert "lint_mse_for_classification" not in [f.kind for f in fixed.findings]


@requires_mnist
def test_fixed_run_learns_where_the_broken_one_stalls(fix_run):
    r = fix_run
    assert r.finite_loss[-5:].mean() < 0.6 * r.finite_loss[:5].mean()
    assert r.final("val_accuracy") > 0.4  # the broken run: <= 0.2 (above)
    assert r.log10_min_activation > -20


@requires_mnist
def test_sweep_names_the_combinations_that_turn_nan(split):
    rows = sweep(split, seed=0, lrs=(30.0, 300.0), batch_sizes=(10,), steps=3, width=W)
    table = {(row["logistic"], row["eta"]): row for row in rows}
    assert len(rows) == 4
    assert table[("nn.Sigmoid", 300.0)]["first NaN/Inf"] == "none"
    assert table[("1/(1+exp(-z))", 300.0)]["first NaN/Inf"] == "step 1, fc3 (backward)"
    # a larger step throws the outputs further into the tail
    assert (
        table[("nn.Sigmoid", 300.0)]["log10 min |a|"] < table[("nn.Sigmoid", 30.0)]["log10 min |a|"]
    )


@requires_mnist
def test_claim_checks_hold_on_small_runs_and_fail_without_their_evidence(
    split, broken_run, nan_run, fix_run
):
    broken, fix = broken_run, fix_run
    checks = code_checks(split, seed=0, width=16)
    assert nan._names_first(nan_run) and not nan._names_first(replace(nan_run, findings=()))
    assert nan._finds_check("c", [broken], [nan_run], checks).holds
    assert not nan._finds_check("c", [fix], [nan_run], checks).holds  # no saturation there
    assert nan._nan_check("c", [broken], [nan_run], ()).holds
    assert not nan._nan_check("c", [fix], [nan_run], ()).holds  # the fix does not stall
    assert not nan._nan_check("c", [broken], [broken], ()).holds  # no NaN
    assert nan._fix_check("c", [broken], {"fix": [fix]}).holds
    assert not nan._fix_check("c", [broken], {"broken": [broken]}).holds
    assert nan._gradcheck_check("c", checks).holds


def test_lr_at_interpolates_linearly_in_log10():
    rows = [
        {"logistic": "nn.Sigmoid", "eta": e, "batch": 10, "log10 min |a|": v, "first NaN/Inf": n}
        for e, v, n in ((3.0, -50.0, "none"), (10.0, -170.0, "none"), (30.0, -290.0, "step 1"))
    ]
    assert lr_at(rows, -100.0) == pytest.approx(3 + 7 * 50 / 120, rel=1e-12)
    assert math.isnan(lr_at(rows, -200.0))  # beyond the rows without a NaN
    assert math.isnan(lr_at(rows, -100.0, batch=100))


def test_batches_reshuffle_each_epoch_and_detail_schedule():
    order = [b.tolist() for b in batches(25, 10, 5, seed=3)]  # 2 full batches an epoch
    assert [len(b) for b in order] == [10] * 5
    assert len(set(order[0] + order[1])) == 20 and order[:2] != order[2:4]
    assert order == [b.tolist() for b in batches(25, 10, 5, seed=3)]
    schedule = DetailSchedule(first=3, every=5)
    assert [s for s in range(16) if schedule(s)] == [0, 1, 2, 5, 10, 15]
    assert "first=3" in repr(schedule)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Variant("x", "x", activation="sigmod"), "activation='sigmod' is not one of"),
        (lambda: Variant("x", "x", logistic="numpy"), "logistic='numpy' is not one of"),
        (lambda: Variant("x", "x", lr=0.0), "lr=0.0 is not valid"),
        (lambda: Variant("x", "x", batch_size=0), "batch_size=0 is not valid"),
        (lambda: make_network(BROKEN, 0, width=0), "width=0 is not valid"),
        (lambda: make_network(BROKEN, -1), "seed=-1 is not valid"),
        (lambda: list(batches(5, 10, 1, 0)), "batch_size=10 is larger than the 5"),
        (lambda: DetailSchedule(every=0), "every=0 is not valid"),
    ],
)
def test_bad_input_says_what_was_wrong(make, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        make()


@requires_mnist
def test_bad_sizes_say_what_was_wrong(split):
    with pytest.raises(ValueError, match="n_val=20000 exceeds the 10000 validation images"):
        load_split(10, 20_000)
    with pytest.raises(ValueError, match="steps=0 is not valid"):
        train_variant(BROKEN, split, seed=0, steps=0, width=W)
