"""Every recorded gradient / weight quantity equals plain autograd and arithmetic (rtol 1e-5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import gradprobe as gp
from tests.oracle import OutputCatcher, train_step_with_oracle

QUANTITIES = (
    "grad_norm",
    "bias_grad_norm",
    "delta_norm",
    "grad_abs_mean",
    "grad_abs_max",
    "weight_norm",
    "update_norm",
    "update_ratio",
    "weight_change_mean",
)


def mlp():
    return nn.Sequential(
        nn.Linear(20, 32),
        nn.Sigmoid(),
        nn.Linear(32, 32),
        nn.Tanh(),
        nn.Linear(32, 32),
        nn.ReLU(),
        nn.Linear(32, 5),
    )


def cnn():
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1, bias=False),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(64, 5),
    )


class LSTMClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(30, 12)
        self.lstm = nn.LSTM(12, 16, num_layers=2, batch_first=True)
        self.head = nn.Linear(16, 5)

    def forward(self, tokens):
        out, _ = self.lstm(self.embed(tokens))
        return self.head(out[:, -1])


class TinyTransformer(nn.Module):
    def __init__(self):
        super().__init__()
        layer = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        return self.head(self.encoder(x).mean(1))


def batches(kind, step):
    g = torch.Generator().manual_seed(100 + step)
    y = torch.randint(0, 5, (8,), generator=g)
    if kind == "mlp":
        return torch.randn(8, 20, generator=g), y
    if kind == "cnn":
        return torch.randn(8, 1, 8, 8, generator=g), y
    if kind == "lstm":
        return torch.randint(0, 30, (8, 7), generator=g), y
    return torch.randn(8, 6, 16, generator=g), y


MODELS = {"mlp": mlp, "cnn": cnn, "lstm": LSTMClassifier, "transformer": TinyTransformer}


def _check(rec, expected_steps, quantities=QUANTITIES):
    for s, expected in enumerate(expected_steps):
        for q in quantities:
            got = rec[q][s]
            want = np.array([expected[q][name] for name in rec.layers])
            atol = 0.0
            if q == "delta_norm":  # float32 sums that cancel: see oracle.delta_norm
                atol = 1e-6 * np.array([expected["_delta_scale"][n] for n in rec.layers])
            close = np.isclose(got, want, rtol=1e-5, atol=0, equal_nan=True)
            close |= np.abs(got - want) <= atol
            assert close.all(), f"{q} step {s}: recorded {got}, autograd {want}"
        np.testing.assert_allclose(
            rec.global_grad_norm[s], expected["_global_grad_norm"][""], rtol=1e-5
        )


@pytest.mark.parametrize("kind", list(MODELS))
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_quantities_equal_autograd(kind, optimizer):
    torch.manual_seed(0)
    model = MODELS[kind]()
    opt = (
        torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        if optimizer == "sgd"
        else torch.optim.Adam(model.parameters(), lr=1e-2)
    )
    catcher = OutputCatcher(model)
    expected, losses = [], []
    with gp.watch(model, opt, detail_every=1) as probe:
        for step in range(3):
            exp, loss = train_step_with_oracle(
                model, opt, catcher, batches(kind, step), nn.functional.cross_entropy
            )
            probe.log_loss(loss)
            expected.append(exp)
            losses.append(loss)
    rec = probe.record()
    assert list(rec.steps) == [0, 1, 2]
    _check(rec, expected)
    np.testing.assert_allclose(rec.loss, losses, rtol=1e-12)


def test_nielsen_identity_delta_equals_bias_grad():
    """For a Linear layer with bias, ||delta^l|| (summed over the batch) = ||dC/db^l||."""
    torch.manual_seed(1)
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gp.watch(model, opt, delta="hook") as probe:
        for step in range(2):
            x, y = batches("mlp", step)
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    rec = probe.record()
    # delta measured at the output by a hook, bias gradient from .grad: two paths, one value
    np.testing.assert_allclose(rec["delta_norm"], rec["bias_grad_norm"], rtol=1e-5)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_hooked_delta_equals_bias_delta(kind):
    """delta="hook" measures at the output what delta="auto" reads from bias.grad."""
    recs = []
    for mode in ("auto", "hook"):
        torch.manual_seed(2)
        model = MODELS[kind]()
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        with gp.watch(model, opt, delta=mode) as probe:
            for step in range(2):
                x, y = batches(kind, step)
                opt.zero_grad()
                nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
        recs.append(probe.record())
    # a conv bias before BatchNorm has delta ~ 0: float32 rounding noise of ~1e-8 there
    atol = 1e-6 * np.nanmax(recs[1]["delta_norm"])
    np.testing.assert_allclose(recs[0]["delta_norm"], recs[1]["delta_norm"], rtol=1e-5, atol=atol)


def test_without_optimizer_probe_step():
    """probe.step() ends a step in a hand-written update loop; W_t - W_{t-1} is exact."""
    torch.manual_seed(3)
    model = mlp()
    catcher = OutputCatcher(model)

    class PlainSGD(torch.optim.SGD):
        pass

    opt = PlainSGD(model.parameters(), lr=0.1)  # used by the oracle only
    expected = []
    with gp.watch(model, detail_every=1) as probe:
        for step in range(3):
            exp, _ = train_step_with_oracle(
                model, opt, catcher, batches("mlp", step), nn.functional.cross_entropy
            )
            probe.step()
            expected.append(exp)
    _check(probe.record(), expected)


def test_gradient_accumulation_sums_micro_batches():
    """Two forward/backward passes before one step: figures are those the optimizer uses."""
    torch.manual_seed(4)
    model = mlp()
    catcher = OutputCatcher(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gp.watch(model, opt, detail_every=1) as probe:
        opt.zero_grad()
        outs = []
        for micro in range(2):
            x, y = batches("mlp", micro)
            nn.functional.cross_entropy(model(x), y).backward()
            outs.append(dict(catcher.outputs))
            catcher.clear()
        grads = {n: m.bias.grad.clone() for n, m in model.named_children() if hasattr(m, "bias")}
        opt.step()
    rec = probe.record()
    for j, name in enumerate(rec.layers):
        np.testing.assert_allclose(
            rec["delta_norm"][0, j], float(grads[name].double().norm()), rtol=1e-5
        )


def test_frozen_bias_delta_is_hooked_not_lost():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
    model[0].bias.requires_grad_(False)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    x, y = torch.randn(8, 5), torch.randint(0, 3, (8,))
    probe = gp.watch(model, optimizer=opt)
    z1 = model[0](x)
    z1.retain_grad()
    loss = nn.functional.cross_entropy(model[2](model[1](z1)), y)
    loss.backward()
    opt.step()
    probe.close()
    rec = probe.record()
    assert rec.layer_info[0]["delta_source"] == "output_hook"
    np.testing.assert_allclose(rec["delta_norm"][0, 0], z1.grad.sum(0).norm().item(), rtol=1e-6)
