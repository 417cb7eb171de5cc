"""Activation modules read by the next layer's hook: no hook of their own, same numbers.

In a plain nn.Sequential [layer, activation, layer] the second layer's input is phi(z) of
the first; the probe reads it there instead of hooking the activation module (which would
take it off nn.Module's fast call path). Oracles: the activations recomputed by hand,
module by module, from the same weights and inputs.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import gradprobe as gp


def _stats(a: torch.Tensor, kind: str | None) -> dict[str, float]:
    a = a.double()
    out = {"act_mean": float(a.mean()), "act_std": float(a.std(unbiased=False))}
    out["saturated_frac"] = {
        "tanh": float((a.abs() > 0.97).double().mean()),
        "sigmoid": float(((a - 0.5).abs() > 0.485).double().mean()),
    }.get(kind, np.nan)
    out["dead_frac"] = float((a.amax(0) <= 0).double().mean()) if kind == "relu" else np.nan
    return out


def _train(model: nn.Module, layer_outputs, steps: int = 3, **kw):
    """Train under gp.watch; per step, the oracle statistics of each layer's activation.

    layer_outputs(model, x) -> [(activation tensor, kind)] per layer, recomputed by hand
    under no_grad from the weights the step's forward uses.
    """
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    expected, hooks_seen = [], []
    with gp.watch(model, opt, detail_every=1, **kw) as probe:
        for step in range(steps):
            g = torch.Generator().manual_seed(step)
            x, y = torch.randn(32, 10, generator=g), torch.randint(0, 3, (32,), generator=g)
            with torch.no_grad():
                expected.append([_stats(a, kind) for a, kind in layer_outputs(model, x)])
            hooks_seen.append({name: len(m._forward_hooks) for name, m in model.named_modules()})
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    return probe.record(), expected, hooks_seen


def _assert_stats(rec, expected) -> None:
    """Within rtol; act_std, sqrt(E[a^2] - mean^2) from float32 sums, within rtol of the
    activations' second moment (the cancellation's scale, not the value's)."""
    for s, per_layer in enumerate(expected):
        for q in per_layer[0]:
            want = np.array([d[q] for d in per_layer])
            atol = 0.0
            if q == "act_std":
                mean = np.array([d["act_mean"] for d in per_layer])
                atol = 1e-5 * (want**2 + mean**2) / np.maximum(want, 1e-30)
            got = rec[q][s]
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=q)
            ok = np.isnan(want) | (np.abs(got - want) <= atol + 1e-5 * np.abs(want))
            assert ok.all(), f"step {s} {q}: got {got} want {want}"


def _big(model: nn.Sequential) -> nn.Sequential:
    """Large weights and a negative bias: real saturation and dead units to count."""
    with torch.no_grad():
        model[0].weight.mul_(8)
        model[2].weight.mul_(6)
        model[4].bias.fill_(-1.0)
    return model


def test_plain_sequential_activations_carry_no_hook_and_read_the_same():
    torch.manual_seed(0)
    model = _big(nn.Sequential(
        nn.Linear(10, 64), nn.Sigmoid(), nn.Linear(64, 64), nn.Tanh(),
        nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 3), nn.Sigmoid(),
    ))  # fmt: skip
    kinds = {1: "sigmoid", 3: "tanh", 5: "relu", 7: "sigmoid"}

    def outputs(m, x):
        acts = {}
        for i, child in enumerate(m):
            x = child(x)
            acts[i] = x
        return [(acts[i], kinds[i]) for i in (1, 3, 5, 7)]

    rec, expected, hooks = _train(model, outputs)
    # between layers: no hook; the last Sigmoid has no layer after it and keeps its hook
    assert all(h["1"] == h["3"] == h["5"] == 0 and h["7"] == 1 for h in hooks)
    assert all(h[str(i)] == 1 for h in hooks for i in (0, 2, 4, 6))
    assert [d["activation"] for d in rec.layer_info] == ["Sigmoid", "Tanh", "ReLU", "Sigmoid"]
    _assert_stats(rec, expected)
    assert 0.2 < rec["saturated_frac"][0, 0] < 1 and 0 < rec["dead_frac"][0, 2] < 1


def test_a_shared_activation_instance_keeps_its_hook():
    """One nn.ReLU object at two places and once after the last layer: hooked, as before."""
    torch.manual_seed(0)
    relu = nn.ReLU()
    model = nn.Sequential(nn.Linear(10, 32), relu, nn.Linear(32, 32), relu, nn.Linear(32, 3), relu)

    def outputs(m, x):
        h1 = relu(m[0](x))
        h2 = relu(m[2](h1))
        return [(h1, "relu"), (h2, "relu"), (relu(m[4](h2)), "relu")]

    rec, expected, hooks = _train(model, outputs)
    assert all(h["1"] == 1 for h in hooks)  # the same module under names 1, 3 and 5
    _assert_stats(rec, expected)


def test_an_activation_also_used_outside_the_sequential_keeps_its_hook():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.act = nn.Tanh()
            self.body = nn.Sequential(nn.Linear(10, 32), self.act, nn.Linear(32, 32))
            self.head = nn.Linear(32, 3)

        def forward(self, x):
            return self.head(self.act(self.body(x)))

    torch.manual_seed(0)
    model = Net()

    def outputs(m, x):
        h1 = m.act(m.body[0](x))
        h2 = m.act(m.body[2](h1))
        return [(h1, "tanh"), (h2, "tanh"), (m.head(h2), None)]

    rec, expected, hooks = _train(model, outputs)
    assert all(h["act"] == 1 for h in hooks)
    assert rec.layers == ["body.0", "body.2", "head"]
    _assert_stats(rec, expected)


def test_a_sequential_with_its_own_forward_is_not_trusted():
    """A subclass that skips the activation: layer 0's activation is z, not tanh(z)."""

    class SkipAct(nn.Sequential):
        def forward(self, x):
            return self[4](torch.relu(self[2](self[0](x))))

    torch.manual_seed(0)
    model = SkipAct(nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3))

    def outputs(m, x):
        z0 = m[0](x)
        z2 = m[2](z0)
        return [(z0, None), (z2, None), (m[4](torch.relu(z2)), None)]

    rec, expected, hooks = _train(model, outputs)
    assert all(h["1"] == 1 and h["3"] == 1 for h in hooks)  # hooked: never called
    assert [d["activation"] for d in rec.layer_info] == [None, None, None]
    _assert_stats(rec, expected)


@pytest.mark.parametrize("inplace", [False, True])
def test_in_place_relu_between_layers(inplace):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(inplace=inplace), nn.Linear(32, 3))
    with torch.no_grad():
        model[0].bias[:16] = -5.0  # half the units dead for every input

    def outputs(m, x):
        h = torch.relu(m[0](x))
        return [(h, "relu"), (m[2](h), None)]

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "modified in place" warning
        rec, expected, hooks = _train(model, outputs)
    assert all(h["1"] == 0 for h in hooks)
    _assert_stats(rec, expected)
    assert 0 < rec["dead_frac"][0, 0] < 1


def test_a_layer_that_follows_different_layers_is_not_given_either():
    """The same Linear after two different [layer, activation] pairs: hooks stay."""
    torch.manual_seed(0)
    shared = nn.Linear(16, 16)
    a = nn.Sequential(nn.Linear(10, 16), nn.Tanh(), shared)
    b = nn.Sequential(nn.Linear(16, 16), nn.Sigmoid(), shared)
    model = nn.Sequential(a, b, nn.Linear(16, 3))
    with gp.watch(model) as probe:
        assert len(a[1]._forward_hooks) == 1 and len(b[1]._forward_hooks) == 1
        assert all(f is None for f in probe._followers)
