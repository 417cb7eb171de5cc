"""train_ensemble: each member equals training it alone with nn.Sequential + SGD + gp.watch.

The oracle is the plain loop a user writes for one model (`solo`): its final weights and
the Record gp.watch gives. The ensemble must reproduce both, member by member, within
float32 rounding (rtol 1e-5), including a member that goes NaN.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gradprobe as gp
from gradprobe.lab.ensemble import EnsembleMLP, cross_entropy_cost, train_ensemble
from gradprobe.lab.models import mlp

SIZES = [20, 8, 8, 4]
N, BATCH, EPOCHS, LR, L2 = 100, 10, 3, 0.5, 5.0  # 30 steps: details at steps 0, 10, 20
INIT_SEEDS, DATA_SEEDS = (1, 2, 3), (11, 12, 13)
RTOL = 1e-5


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(N, SIZES[0], generator=g), torch.randint(0, SIZES[-1], (N,), generator=g)


def members(activation: str = "sigmoid", nan_member: int | None = None) -> list[nn.Sequential]:
    models = [
        mlp(SIZES, activation, "nielsen", generator=torch.Generator().manual_seed(s))
        for s in INIT_SEEDS
    ]
    if nan_member is not None:
        with torch.no_grad():
            models[nan_member].fc2.weight[0, 0] = math.nan
    return models


def solo(model: nn.Sequential, x, y, seed: int, **watch) -> gp.Record:
    """One member alone: the ordinary loop, Nielsen's cost and L2, gp.watch at every step."""
    decayed = [p for p in model.parameters() if p.dim() > 1]
    rest = [p for p in model.parameters() if p.dim() == 1]
    opt = torch.optim.SGD(
        [{"params": decayed, "weight_decay": L2 / N}, {"params": rest, "weight_decay": 0.0}],
        lr=LR,
    )
    onehot = F.one_hot(y, SIZES[-1]).float()
    g = torch.Generator().manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the NaN member's warning
        with gp.watch(model, opt, **watch) as probe:
            for _ in range(EPOCHS):
                order = torch.randperm(N, generator=g)
                for start in range(0, N, BATCH):
                    idx = order[start : start + BATCH]
                    opt.zero_grad()
                    z = model(x[idx])
                    loss = F.binary_cross_entropy_with_logits(z, onehot[idx], reduction="sum")
                    (loss / len(idx)).backward()
                    opt.step()
                    probe.log_loss(loss / len(idx))
    return probe.record()


def ensemble(models, x, y, **kw) -> list[gp.Record]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return train_ensemble(
            models, x, y, epochs=EPOCHS, batch_size=BATCH, lr=LR, l2=L2, seeds=DATA_SEEDS, **kw
        )


def assert_records_equal(got: gp.Record, want: gp.Record) -> None:
    """Quantity by quantity within rtol; NaN exactly where the solo record has NaN.

    act_std and abs_min_nonzero are differences of nearly equal float32 numbers (E[a^2] -
    mean^2; the smallest |logit|), so their rounding is relative to the activations' scale,
    E[a^2], not to the value: they get that absolute tolerance.
    """
    assert got.layers == want.layers and got.layer_info == want.layer_info
    np.testing.assert_array_equal(got.steps, want.steps)
    assert set(got.quantities) == set(want.quantities)
    second_moment = want["act_std"] ** 2 + want["act_mean"] ** 2
    for q in want.quantities:
        atol = 0.0
        if q == "act_std":
            atol = RTOL * second_moment / np.maximum(want[q], 1e-30)
        elif q == "abs_min_nonzero":
            atol = RTOL * np.sqrt(second_moment)
        g, w, atol = got[q], want[q], np.nan_to_num(atol)  # NaN scale: a NaN layer
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w), err_msg=q)
        ok = np.isnan(w) | (np.abs(g - w) <= atol + RTOL * np.abs(w))
        assert ok.all(), f"{q}: got {g[~ok]} want {w[~ok]}"
    for q, w in want.step_values.items():
        np.testing.assert_allclose(got.step_values[q], w, rtol=RTOL, err_msg=q)


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_each_member_equals_training_it_alone(activation):
    x, y = data()
    trained = members(activation)
    records = ensemble(trained, x, y)
    for model, got, record, seed in zip(members(activation), trained, records, DATA_SEEDS):
        assert_records_equal(record, solo(model, x, y, seed))
        for name, p in model.state_dict().items():
            torch.testing.assert_close(got.state_dict()[name], p, rtol=RTOL, atol=1e-7)
    assert len(records[0]) == EPOCHS * N // BATCH


def test_a_member_gone_nan_leaves_the_others_alone():
    x, y = data()
    clean = ensemble(members(), x, y)
    poisoned = ensemble(members(nan_member=1), x, y)
    assert poisoned[1].first_nonfinite() == {"step": 0, "layer": "fc2", "where": "forward"}
    assert_records_equal(poisoned[1], solo(members(nan_member=1)[1], x, y, DATA_SEEDS[1]))
    assert poisoned[1]["act_nonfinite"][0].tolist() == [0.0, BATCH, BATCH * SIZES[-1]]
    for m in (0, 2):
        assert poisoned[m].first_nonfinite() is None
        for q in clean[m].quantities:
            np.testing.assert_array_equal(poisoned[m][q], clean[m][q], err_msg=q)


def test_members_follow_their_own_data_order():
    x, y = data()
    same = [mlp(SIZES, generator=torch.Generator().manual_seed(7)) for _ in range(3)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        records = train_ensemble(same, x, y, epochs=1, batch_size=BATCH, lr=LR, seeds=[5, 6, 5])
    loss = [r.loss for r in records]
    assert not np.allclose(loss[0], loss[1])  # same weights, another order
    np.testing.assert_array_equal(loss[0], loss[2])  # same weights, same seed


def test_cost_is_nielsens_cross_entropy_and_finite_for_large_logits():
    z = torch.randn(2, 5, 4, dtype=torch.float64)
    y = F.one_hot(torch.randint(0, 4, (2, 5)), 4).double()
    a = torch.sigmoid(z)
    nielsen = -(y * a.log() + (1 - y) * (1 - a).log()).sum((-2, -1)) / 5  # network2.py
    torch.testing.assert_close(cross_entropy_cost(z, y), nielsen)
    torch.testing.assert_close(cross_entropy_cost(z[0], y[0]), nielsen[0])
    assert torch.isfinite(cross_entropy_cost(z * 1e4, y)).all()


def test_member_state_dicts_load_into_the_solo_model():
    x, _ = data()
    net = EnsembleMLP(members())
    solo_model = members()[0]
    solo_model.load_state_dict(net.member_state_dicts()[2])
    with torch.no_grad():
        torch.testing.assert_close(net(x.expand(3, N, -1))[2], solo_model(x))
    assert "3 members" in repr(net) and "[20, 8, 8, 4]" in repr(net)


def test_run_dirs_hold_the_same_records(tmp_path):
    x, y = data()
    dirs = [tmp_path / f"m{i}" for i in range(3)]
    in_memory = ensemble(members(), x, y)
    ensemble(members(), x, y, run_dirs=dirs)
    for d, want in zip(dirs, in_memory):
        got = gp.load(d)
        assert got.status == "done"
        for q in want.quantities:
            np.testing.assert_allclose(got[q], want[q], rtol=1e-12, err_msg=q)


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda ms, x, y: ([ms[0], mlp([20, 9, 8, 4])], x, y, {}), "differs from model 0"),
        (lambda ms, x, y: ([nn.Linear(20, 4)], x, y, {}), "nn.Sequential"),
        (lambda ms, x, y: ([mlp(SIZES, output_activation="sigmoid")], x, y, {}), "out_act"),
        (lambda ms, x, y: ([mlp(SIZES, norm="batch")], x, y, {}), "norm1"),
        (lambda ms, x, y: ([], x, y, {}), "at least one model"),
        (lambda ms, x, y: (ms, x[:, :5], y, {}), r"shape \(n, 20\)"),
        (lambda ms, x, y: (ms, x, y + 4, {}), r"labels y must lie in \[0, 4\)"),
        (lambda ms, x, y: (ms, x, y.float(), {}), "integer tensor"),
        (lambda ms, x, y: (ms, x, y, {"seeds": [1, 2]}), "2 seeds/generators given for 3"),
        (lambda ms, x, y: (ms, x, y, {"batch_size": N + 1}), "larger than the data"),
        (lambda ms, x, y: (ms, x, y, {"lr": 0.0}), "lr=0.0 must be"),
        (lambda ms, x, y: (ms, x, y, {"l2": -1.0}), "l2=-1.0 must be"),
        (lambda ms, x, y: (ms, x, y, {"run_dirs": ["a"]}), "1 run_dirs given for 3"),
    ],
)
def test_bad_input_says_what_is_wrong(change, match):
    x, y = data()
    models, x, y, kw = change(members(), x, y)
    args = {"epochs": 1, "batch_size": BATCH, "lr": LR, "seeds": DATA_SEEDS, **kw}
    with pytest.raises((ValueError, TypeError), match=match):
        train_ensemble(models, x, y, **args)


def test_sparse_schedules_equal_the_solo_probe():
    # detail_every counts recorded steps in both probes: every=2, detail_every=3
    x, y = data()
    records = ensemble(members("sigmoid"), x, y, every=2, detail_every=3)
    for model, record, seed in zip(members("sigmoid"), records, DATA_SEEDS):
        assert_records_equal(record, solo(model, x, y, seed, every=2, detail_every=3))
