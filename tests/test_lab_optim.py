"""Optimizers: one step equals Nielsen's hand update, momentum and Adam equal their formulas,
biases and norm parameters are not decayed, bad settings raise clear errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradprobe.lab.optim import OPTIMIZERS, make_optimizer, param_groups

ETA, LAMBDA, N = 0.5, 5.0, 100


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2)).double()


def _grads(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Compute a loss's gradients; return them keyed by parameter name."""
    model.zero_grad()
    model(x).square().sum().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_one_sgd_step_is_nielsens_l2_update():
    model = _model()
    opt = make_optimizer("sgd", model, lr=ETA, l2=LAMBDA, n_train=N)
    before, grads = _snapshot(model), _grads(model, torch.randn(8, 4, dtype=torch.float64))
    opt.step()
    for name, p in model.named_parameters():
        w, g = before[name], grads[name]
        # weights: w <- (1 - eta lambda / n) w - eta g; biases: b <- b - eta g_b
        shrink = 1 - ETA * LAMBDA / N if name.endswith("weight") else 1.0
        expected = shrink * w - ETA * g
        torch.testing.assert_close(p.detach(), expected, rtol=1e-12, atol=1e-12)


def test_momentum_matches_two_steps_of_torchs_formula():
    model, mu, wd = _model(), 0.9, LAMBDA / N
    opt = make_optimizer("sgd", model, lr=ETA, momentum=mu, l2=LAMBDA, n_train=N)
    w0 = _snapshot(model)
    g1 = _grads(model, torch.randn(8, 4, dtype=torch.float64))
    opt.step()
    w1 = _snapshot(model)
    g2 = _grads(model, torch.randn(8, 4, dtype=torch.float64))
    opt.step()
    for name, p in model.named_parameters():
        decay = wd if name.endswith("weight") else 0.0
        buf1 = g1[name] + decay * w0[name]  # torch: buf_1 = g_1 (+ weight decay)
        torch.testing.assert_close(w1[name], w0[name] - ETA * buf1, rtol=1e-12, atol=1e-12)
        buf2 = mu * buf1 + g2[name] + decay * w1[name]  # buf_t = mu buf_{t-1} + g_t
        torch.testing.assert_close(p.detach(), w1[name] - ETA * buf2, rtol=1e-12, atol=1e-12)


def test_one_adam_step_with_coupled_decay():
    model, lr, (b1, b2), eps = _model(), 1e-2, (0.9, 0.999), 1e-8
    opt = make_optimizer("adam", model, lr=lr, l2=LAMBDA, n_train=N)
    before, grads = _snapshot(model), _grads(model, torch.randn(8, 4, dtype=torch.float64))
    opt.step()
    for name, p in model.named_parameters():
        decay = LAMBDA / N if name.endswith("weight") else 0.0
        g = grads[name] + decay * before[name]  # coupled: decay enters the gradient
        m_hat = (1 - b1) * g / (1 - b1)  # bias-corrected first moment after one step
        v_hat = (1 - b2) * g.square() / (1 - b2)
        expected = before[name] - lr * m_hat / (v_hat.sqrt() + eps)
        torch.testing.assert_close(p.detach(), expected, rtol=1e-10, atol=1e-12)


def test_norm_parameters_are_not_decayed():
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.LayerNorm(6), nn.Linear(6, 2))
    groups = param_groups(model, 0.05)
    assert [g["name"] for g in groups] == ["weights", "biases"]
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0]
    assert {id(p) for p in groups[0]["params"]} == {id(model[0].weight), id(model[3].weight)}
    assert len(groups[1]["params"]) == 6  # 2 biases + BN weight/bias + LN weight/bias
    opt = make_optimizer("sgd", model, lr=0.1, l2=LAMBDA, n_train=N)
    assert opt.param_groups[0]["weight_decay"] == pytest.approx(LAMBDA / N)


def test_frozen_parameters_are_left_out():
    model = _model()
    model[0].requires_grad_(False)
    opt = make_optimizer("sgd", model, lr=0.1, n_train=1)
    assert sum(len(g["params"]) for g in opt.param_groups) == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(name="rmsprop"), "optimizer='rmsprop' is not one of: sgd, adam"),
        (dict(lr=0.0), r"lr=0.0 must be a finite number > 0"),
        (dict(lr=float("nan")), r"lr=nan must be a finite number > 0"),
        (dict(momentum=1.0), r"momentum=1.0 must be in \[0, 1\)"),
        (dict(momentum=-0.1), r"momentum=-0.1 must be in \[0, 1\)"),
        (dict(l2=-1.0), "l2=-1.0 must be a finite number >= 0"),
        (dict(n_train=0), r"n_train=0 must be an int >= 1"),
        (dict(name="adam", momentum=0.9), "momentum=0.9 applies to sgd only"),
        (dict(nesterov=True), "nesterov=True needs momentum > 0"),
    ],
)
def test_bad_settings_raise_clear_errors(kwargs, message):
    args = dict(name="sgd", lr=0.1, n_train=10) | kwargs
    name = args.pop("name")
    with pytest.raises(ValueError, match=message):
        make_optimizer(name, _model(), **args)


def test_every_optimizer_builds():
    for name in OPTIMIZERS:
        assert isinstance(make_optimizer(name, _model(), lr=0.1, n_train=5), torch.optim.Optimizer)
    with pytest.raises(ValueError, match="no trainable parameters"):
        make_optimizer("sgd", nn.ReLU(), lr=0.1, n_train=5)
