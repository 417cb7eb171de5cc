"""Activation statistics equal direct computation on the activations the model produced."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

import gradprobe as gp


def _model():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(10, 64),
        nn.Sigmoid(),
        nn.Linear(64, 64),
        nn.Tanh(),
        nn.Linear(64, 64),
        nn.ReLU(),
        nn.Linear(64, 3),
    )
    with torch.no_grad():  # large weights: saturate sigmoid/tanh, kill some ReLUs
        model[0].weight.mul_(8)
        model[2].weight.mul_(6)
        model[4].bias.fill_(-1.0)
    return model


def _direct(a: torch.Tensor, kind: str | None) -> dict[str, float]:
    a = a.detach().double()
    nonzero = a.abs()[a != 0]
    out = {
        "act_mean": float(a.mean()),
        "act_std": float(a.std(unbiased=False)),
        "act_nonfinite": float((~torch.isfinite(a)).sum()),
        "abs_min_nonzero": float(nonzero.min()) if nonzero.numel() else math.nan,
        "saturated_frac": math.nan,
        "dead_frac": math.nan,
    }
    if kind == "tanh":
        out["saturated_frac"] = float((a.abs() > 0.97).double().mean())
    if kind == "sigmoid":
        out["saturated_frac"] = float(((a - 0.5).abs() > 0.485).double().mean())
    if kind == "relu":
        out["dead_frac"] = float((a.amax(0) <= 0).double().mean())
    return out


def test_activation_stats_equal_direct_computation():
    model = _model()
    acts: dict[int, torch.Tensor] = {}
    for i in (1, 3, 5, 6):
        model[i].register_forward_hook(lambda m, a, o, i=i: acts.__setitem__(i, o.detach()))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    expected = []
    kinds = {1: "sigmoid", 3: "tanh", 5: "relu", 6: None}
    with gp.watch(model, opt, detail_every=1) as probe:
        for step in range(3):
            g = torch.Generator().manual_seed(step)
            x, y = torch.randn(32, 10, generator=g), torch.randint(0, 3, (32,), generator=g)
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            expected.append({i: _direct(acts[i], kinds[i]) for i in kinds})
    rec = probe.record()
    assert rec.layers == ["0", "2", "4", "6"]
    assert [d["activation"] for d in rec.layer_info] == ["Sigmoid", "Tanh", "ReLU", None]
    for s, exp in enumerate(expected):
        for q in exp[1]:
            want = [exp[i][q] for i in (1, 3, 5, 6)]
            np.testing.assert_allclose(rec[q][s], want, rtol=1e-5, equal_nan=True, err_msg=q)
    # the construction saturates and kills: the test checks real, non-trivial fractions
    assert 0.2 < rec["saturated_frac"][0, 0] < 1 and 0.2 < rec["saturated_frac"][0, 1] < 1
    assert 0 < rec["dead_frac"][0, 2] < 1


def test_dead_units_over_micro_batches_are_dead_in_every_one():
    """A unit alive in one micro-batch of the step is not dead for the step."""
    lin, relu = nn.Linear(1, 2), nn.ReLU()
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0], [-1.0]]))
        lin.bias.zero_()
    model = nn.Sequential(lin, relu, nn.Linear(2, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    with gp.watch(model, opt, detail_every=1) as probe:
        opt.zero_grad()
        model(torch.ones(4, 1)).sum().backward()  # unit 1 dead here
        model(-torch.ones(4, 1)).sum().backward()  # unit 0 dead here
        opt.step()
        opt.zero_grad()
        model(torch.ones(4, 1)).sum().backward()
        opt.step()
    rec = probe.record()
    assert rec["dead_frac"][:, 0].tolist() == [0.0, 0.5]


def test_eval_passes_under_no_grad_are_not_recorded():
    model = _model()
    seen = []
    model[1].register_forward_hook(lambda m, a, o: seen.append(o.detach()))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with gp.watch(model, opt, detail_every=1) as probe:
        opt.zero_grad()
        model(torch.randn(16, 10)).sum().backward()
        with torch.no_grad():
            model(100 * torch.randn(16, 10))  # would change every activation statistic
        opt.step()
    rec = probe.record()
    train_pass = seen[0].double()
    np.testing.assert_allclose(rec["act_mean"][0, 0], float(train_pass.mean()), rtol=1e-6)
    both = torch.cat(seen).double()
    assert abs(rec["act_mean"][0, 0] - float(both.mean())) > 1e-3  # the eval pass differs
