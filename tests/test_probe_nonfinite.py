"""Non-finite values: caught at the step they first appear, at the right layer and pass,
with exact counts on detail steps and per-step flags from the sums (oracles counted
by hand from the tensors themselves)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import gradprobe as gp


class Scale(nn.Module):
    """A parameter-owning layer (unknown to gradprobe) whose output overflows on demand."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(n))
        self.boom = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x * self.gain
        if self.boom:
            h = h * 1e38 * 10.0  # float32: |h| > 0.34 overflows to inf, the rest stays finite
        return h


class ForwardNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = nn.Linear(4, 16)
        self.act1 = nn.Tanh()
        self.scale = Scale(16)
        self.fc2 = nn.Linear(16, 16)
        self.act2 = nn.Tanh()
        self.fc3 = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.act2(self.fc2(self.scale(self.act1(self.fc1(x))))))


class NaNGrad(torch.autograd.Function):
    """Identity forward; backward puts NaN in feature 0 of the gradient."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        grad[:, 0] = float("nan")
        return grad


class BackwardNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 6)
        self.fc3 = nn.Linear(6, 2)
        self.gate_on = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc2(torch.tanh(self.fc1(x)))
        if self.gate_on:
            h = NaNGrad.apply(h)
        return self.fc3(torch.tanh(h))


def batch(i: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(100 + i)
    return 2 * torch.randn(32, 4, generator=g), torch.randn(32, 2, generator=g)


def nonfinite_count(t: torch.Tensor) -> int:
    return int((~torch.isfinite(t)).sum())


# detail_every=1 counts non-finite elements at every step; with 10 the step where the NaN
# appears is a cheap step: no count, but its sums are not finite, which the record shows
# (*_all_finite 0, the count NaN = unknown) and first_nonfinite uses
DETAIL = pytest.mark.parametrize("detail_every", [1, 10], ids=["detail1", "detail10"])


def assert_counts(rec, prefix: str, step: int, oracle: list[int], counted: bool) -> None:
    """PREFIX_nonfinite and PREFIX_all_finite of one step against counts taken by hand.

    Counted (a detail step): the exact counts. Not counted: 0 where the oracle is 0 (the
    sums prove it), NaN (unknown) where it is not; all_finite is exact either way.
    """
    oracle = np.asarray(oracle, dtype=float)
    got = rec[f"{prefix}_nonfinite"][step]
    want = oracle if counted else np.where(oracle == 0, 0.0, np.nan)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(rec[f"{prefix}_all_finite"][step], (oracle == 0).astype(float))


def assert_tier(rec, detail_every: int, clean_steps: list[int]) -> None:
    """Clean steps carry grad_abs_mean only where detail_every schedules it."""
    scheduled = [s % detail_every == 0 for s in clean_steps]
    finite = np.isfinite(rec["grad_abs_mean"][clean_steps]).all(axis=1)
    np.testing.assert_array_equal(finite, scheduled)


# -- forward ---------------------------------------------------------------------------------


@DETAIL
def test_forward_overflow_caught_at_its_layer(detail_every):
    model = ForwardNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    seen = {}  # (step, module) -> non-finite count of what the probe calls its activation
    step = 0

    def counter(name):
        def hook(module, args, output):
            seen[(step, name)] = nonfinite_count(output)

        return hook

    handles = [getattr(model, n).register_forward_hook(counter(n)) for n in ("scale", "act2")]
    handles.append(model.act1.register_forward_hook(counter("act1")))
    handles.append(model.fc3.register_forward_hook(counter("fc3")))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with gp.watch(model, opt, flush_every=3, detail_every=detail_every) as probe:
            for step in range(6):
                model.scale.boom = step == 3
                x, y = batch(step)
                opt.zero_grad()
                loss = ((model(x) - y) ** 2).mean()
                loss.backward()
                opt.step()
                probe.log_loss(loss)
    for h in handles:
        h.remove()
    rec = probe.record()
    assert rec.layers == ["fc1", "scale", "fc2", "fc3"]
    # the overflow is partial: a real count, not "everything"
    assert 0 < seen[(3, "scale")] < 32 * 16
    expected = {"step": 3, "layer": "scale", "where": "forward"}
    assert probe.first_nonfinite == expected
    assert rec.first_nonfinite() == expected
    for step in range(3):
        assert_counts(rec, "act", step, [0, 0, 0, 0], counted=step % detail_every == 0)
        assert_counts(rec, "grad", step, [0, 0, 0, 0], counted=step % detail_every == 0)
    oracle = [seen[(3, "act1")], seen[(3, "scale")], seen[(3, "act2")], seen[(3, "fc3")]]
    assert oracle[0] == 0 and min(oracle[1:]) > 0
    assert_counts(rec, "act", 3, oracle, counted=detail_every == 1)
    # the backward of step 3 was poisoned too: every gradient is non-finite then
    np.testing.assert_array_equal(rec["grad_all_finite"][3], 0)
    assert (rec["grad_nonfinite"][3] > 0).all() if detail_every == 1 else True
    assert_tier(rec, detail_every, [0, 1, 2])


def test_forward_nonfinite_warns_once_at_flush():
    model = ForwardNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def ours(caught):
        return [w for w in caught if "gradprobe: first non-finite" in str(w.message)]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with gp.watch(model, opt, flush_every=2, flush_secs=1e9) as probe:
            for step in range(9):
                model.scale.boom = step >= 3
                x, y = batch(step)
                opt.zero_grad()
                out = model(x)  # flushes 2,3 at step 4's first layer
                if step == 3:
                    assert ours(caught) == []  # recorded, not yet flushed
                if step == 4:
                    assert len(ours(caught)) == 1
                ((out - y) ** 2).mean().backward()
                opt.step()
    found = ours(caught)
    assert len(found) == 1, [str(w.message) for w in found]
    assert found[0].category is RuntimeWarning
    text = str(found[0].message)
    assert "step 3" in text and "'scale'" in text and "forward" in text
    assert probe.first_nonfinite == {"step": 3, "layer": "scale", "where": "forward"}


# -- backward --------------------------------------------------------------------------------


@DETAIL
@pytest.mark.parametrize("delta", ["auto", "hook"])
def test_backward_nan_caught_at_layer_before_it(delta, detail_every):
    model = BackwardNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    oracle = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with gp.watch(model, opt, delta=delta, detail_every=detail_every) as probe:
            for step in range(4):
                model.gate_on = step == 2
                x, y = batch(step)
                opt.zero_grad()
                out = model(x)
                assert torch.isfinite(out).all() or step > 2
                loss = ((out - y) ** 2).mean()
                loss.backward()
                oracle[step] = [
                    nonfinite_count(layer.weight.grad) + nonfinite_count(layer.bias.grad)
                    for layer in (model.fc1, model.fc2, model.fc3)
                ]
                opt.step()
                probe.log_loss(loss)
    rec = probe.record()
    assert rec.layers == ["fc1", "fc2", "fc3"]
    # NaN in feature 0 of dC/dz2: row 0 of fc2.weight (8) + bias[0]; all of fc1; none of fc3
    assert oracle[2] == [8 * 4 + 8, 8 + 1, 0]
    expected = {"step": 2, "layer": "fc2", "where": "backward"}
    assert probe.first_nonfinite == expected
    assert rec.first_nonfinite() == expected
    for step in range(3):
        assert_counts(rec, "grad", step, oracle[step], counted=step % detail_every == 0)
        assert_counts(rec, "act", step, [0, 0, 0], counted=step % detail_every == 0)  # clean
    assert np.isfinite(rec.loss[:3]).all()
    assert np.isnan(rec["delta_norm"][2, 1]) and np.isfinite(rec["delta_norm"][2, 2])
    assert_tier(rec, detail_every, [0, 1])


class SkipNonfinite(torch.optim.SGD):
    """SGD that leaves a parameter alone when its gradient is not finite (a guard users
    write so that one bad batch does not poison the weights)."""

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None and torch.isfinite(p.grad).all():
                    p.sub_(group["lr"] * p.grad)


def test_transient_backward_nan_on_a_cheap_step_is_caught():
    """One bad backward at step 2 (not a detail step), weights kept finite: no count and
    the norms are finite again at step 3, so only the per-step flags can show it."""
    model = BackwardNet()
    opt = SkipNonfinite(model.parameters(), lr=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with gp.watch(model, opt, detail_every=10) as probe:
            for step in range(5):
                model.gate_on = step == 2
                x, y = batch(step)
                opt.zero_grad()
                ((model(x) - y) ** 2).mean().backward()
                opt.step()
    rec = probe.record()
    assert np.isfinite(rec["grad_norm"][3:]).all()  # recovered: no NaN "for good"
    want = np.ones((5, 3))
    want[2, :2] = 0  # fc1 and fc2 got NaN, fc3 (above the gate) did not
    np.testing.assert_array_equal(rec["grad_all_finite"], want)
    np.testing.assert_array_equal(rec["grad_nonfinite"][2], [np.nan, np.nan, 0])
    expected = {"step": 2, "layer": "fc2", "where": "backward"}
    assert probe.first_nonfinite == expected
    assert rec.first_nonfinite() == expected


# -- loss --------------------------------------------------------------------------------------


def _loss_run(make_loss):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    grads_finite = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with gp.watch(model, opt) as probe:
            for step in range(4):
                x, y = batch(step)
                opt.zero_grad()
                loss = make_loss(model(x), y, step)
                loss.backward()
                grads_finite[step] = all(torch.isfinite(p.grad).all() for p in model.parameters())
                opt.step()
                probe.log_loss(loss)
    return probe, probe.record(), grads_finite, caught


def test_nonfinite_loss_alone():
    def make_loss(out, y, step):
        loss = ((out - y) ** 2).mean()
        return loss + torch.tensor(float("inf")).detach() if step == 1 else loss

    probe, rec, grads_finite, caught = _loss_run(make_loss)
    assert all(grads_finite.values())
    expected = {"step": 1, "layer": None, "where": "loss"}
    assert probe.first_nonfinite == expected
    assert rec.first_nonfinite() == expected
    assert np.isinf(rec.loss[1]) and np.isfinite(rec.loss[[0, 2, 3]]).all()
    np.testing.assert_array_equal(rec["grad_nonfinite"], 0)
    np.testing.assert_array_equal(rec["act_nonfinite"], 0)
    texts = [str(w.message) for w in caught if "non-finite" in str(w.message)]
    assert len(texts) == 1 and "step 1" in texts[0] and "loss" in texts[0]


def _overflowing_loss(out, y, step):
    # forward finite, the loss overflows to inf, and its gradient takes the layers with it
    return (out * (1e30 if step == 1 else 1.0)).pow(2).mean()


def test_overflowing_loss_record_says_loss():
    _, rec, grads_finite, _ = _loss_run(_overflowing_loss)
    assert not grads_finite[1]
    np.testing.assert_array_equal(rec["act_nonfinite"][:2], 0)
    assert rec.first_nonfinite() == {"step": 1, "layer": None, "where": "loss"}


def test_overflowing_loss_probe_agrees_with_record():
    """Both check forward, then loss, then backward: the loss, not the NaN grads after it."""
    probe, rec, grads_finite, _ = _loss_run(_overflowing_loss)
    assert not grads_finite[1]  # the backward was poisoned too
    assert probe.first_nonfinite == {"step": 1, "layer": None, "where": "loss"}
    assert probe.first_nonfinite == rec.first_nonfinite()


def test_finite_run_has_no_nonfinite():
    _, rec, _, caught = _loss_run(lambda out, y, step: ((out - y) ** 2).mean())
    assert rec.first_nonfinite() is None
    np.testing.assert_array_equal(rec["act_nonfinite"], 0)
    np.testing.assert_array_equal(rec["grad_nonfinite"], 0)
    assert not [w for w in caught if "non-finite" in str(w.message)]
