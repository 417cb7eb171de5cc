"""The two-circles reproduction: setup, oracles for the recorded gradients, a small version."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

import gradprobe as gp
from gradprobe.lab.build import build
from gradprobe.lab.config import Experiment
from gradprobe.lab.reproduce import circles, published
from gradprobe.lab.reproduce import circles_parts as parts

DATA = parts.circles()


def _linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model if isinstance(m, nn.Linear)]


def test_tanh_nets_are_the_lab_build_and_inits_follow_keras():
    exp = Experiment(seed=3, dataset="circles", sizes=(2, 5, 5, 5, 5, 5, 1), activation="tanh",
                     init="uniform", loss="bce")  # fmt: skip
    lab, ours = build(exp).model, parts.TANH5.build(3)
    for a, b in zip(_linears(lab), _linears(ours)):
        assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    for layer in _linears(ours):  # RandomUniform(0, 1) on every kernel, the output's too
        assert layer.weight.min() >= 0 and layer.weight.max() < 1 and not layer.bias.any()
    relu = _linears(parts.RELU5.build(3))
    for layer in relu[:-1]:  # he_uniform: U(+-sqrt(6 / fan_in))
        assert layer.weight.abs().max() <= math.sqrt(6 / layer.in_features)
        assert layer.weight.min() < 0 < layer.weight.max()
    # the output keeps Keras's default glorot_uniform, U(+-sqrt(6 / (5 + 1))) = U(+-1)
    assert relu[-1].weight.abs().max() <= 1.0 and relu[-1].weight.min() < 0 < relu[-1].weight.max()
    assert (DATA.x_train.abs().max(), len(DATA.x_train), len(DATA.x_test)) == (1.0, 500, 500)


def _autograd_steps(net: parts.Net, seed: int, n_steps: int) -> list[dict[str, np.ndarray]]:
    """Per step, per layer: |grad| mean and max and ||grad||, by plain autograd + SGD."""
    model, gen = net.build(seed), parts.order_generator(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    order, out = torch.randperm(500, generator=gen), []
    for k in range(n_steps):
        idx = order[k * 32 : (k + 1) * 32]
        opt.zero_grad()
        nn.functional.binary_cross_entropy_with_logits(
            model(DATA.x_train[idx])[:, 0], DATA.y_train[idx].float()
        ).backward()
        grads = [layer.weight.grad for layer in _linears(model)]
        out.append({"grad_abs_mean": np.array([g.abs().mean() for g in grads]),
                    "grad_abs_max": np.array([g.abs().max() for g in grads]),
                    "grad_norm": np.array([g.norm() for g in grads])})  # fmt: skip
        opt.step()
    return out


@pytest.mark.parametrize("net", [parts.TANH5, parts.RELU5], ids=lambda n: n.key)
def test_recorded_gradients_equal_autograd_on_the_same_weights(net):
    _, rec = parts.train_alone(net, 7, epochs=1, data=DATA)
    assert rec.layers == [f"fc{i}" for i in range(1, net.depth + 2)] and len(rec) == 16
    for step, expected in enumerate(_autograd_steps(net, 7, 5)):
        for quantity, values in expected.items():
            np.testing.assert_allclose(rec[quantity][step], values, rtol=1e-5, atol=1e-9)


def test_members_train_each_seed_as_alone_and_average_the_probe_gradient():
    seeds, epochs = (2, 5), 2
    m = parts.train_members(parts.TANH5, seeds, epochs=epochs, data=DATA)
    assert m.test_accuracy.shape == (epochs, 2) and m.grad_abs_mean.shape == (epochs, 2, 6)
    for i, seed in enumerate(seeds):
        model, rec = parts.train_alone(parts.TANH5, seed, epochs=epochs, data=DATA)
        for a, b in zip(_linears(model), _linears(m.models[i])):
            torch.testing.assert_close(a.weight, b.weight, rtol=1e-4, atol=1e-6)
        per_epoch = parts.per_epoch(rec["grad_abs_mean"], epochs)
        np.testing.assert_allclose(m.grad_abs_mean[:, i], per_epoch, rtol=1e-4)
        alone = [row["test_accuracy"] for row in rec.meta["evaluation"]]
        np.testing.assert_allclose(m.test_accuracy[:, i], alone, atol=2 / 500)


def test_small_version_deep_tanh_fails_relu_learns_and_gradients_order():
    seeds, epochs = (0, 1, 2, 4, 5), 60
    tanh = parts.train_members(parts.TANH5, seeds, epochs=epochs, data=DATA)
    relu = parts.train_members(parts.RELU5, seeds, epochs=epochs, data=DATA)
    assert tanh.test_accuracy[-1].max() < 0.6  # every tanh seed at chance
    learned = relu.test_accuracy[-1] > 0.6
    assert learned.sum() >= 3  # most ReLU seeds have learned already
    g_tanh, g_relu = tanh.grad_abs_mean.mean(0), relu.grad_abs_mean.mean(0)  # (M, L)
    # tanh: the output layer far above the hidden layers, and above the first
    assert (g_tanh[:, -1] > g_tanh[:, 0]).all()
    assert (g_tanh[:, -1] > 5 * g_tanh[:, 1:-1].max(1)).all()
    # ReLU (seeds that learn): the first layer is the largest, above tanh's first layer
    assert (g_relu[learned].argmax(1) == 0).all()
    assert (g_relu[learned, 0] > np.median(g_tanh[:, 0])).all()


def _members(test: list[list[float]]) -> parts.Members:
    acc = np.array(test, dtype=float)  # (epochs, M)
    return parts.Members(parts.RELU5, tuple(range(acc.shape[1])), acc, acc,
                         np.ones((len(acc), acc.shape[1], 6)), ())  # fmt: skip


def test_checks_apply_their_stated_criteria():
    pub = published("circles")
    fails = circles.check_tanh_fails(pub, _members([[0.52, 0.51, 0.5], [0.48, 0.47, 0.9]]))
    assert fails.holds and "2/3 seeds end at test accuracy <= 0.75" in fails.evidence
    assert not circles.check_tanh_fails(pub, _members([[0.5, 0.5], [0.6, 0.4]])).holds
    when = circles.epochs_to_learn(np.array([[0.5, 0.8, 0.5], [0.76, 0.9, 0.7]]))
    np.testing.assert_array_equal(when, [2, 1, np.inf])
    fast = circles.check_relu_fast(pub, _members([[0.5, 0.8, 0.5], [0.76, 0.9, 0.7]]))
    assert fast.holds and "2/3 seeds" in fast.evidence
    sweep = {15: _members([[0.8, 0.8, 0.5]]), 20: _members([[0.5, 0.8, 0.5]])}
    assert circles.check_depth(pub, sweep).holds
    assert not circles.check_depth(pub, {15: sweep[20], 20: sweep[20]}).holds
    steps = np.arange(12.0).reshape(6, 2)
    np.testing.assert_allclose(parts.per_epoch(steps, 2), [[2, 3], [8, 9]])
    assert parts.binomial_sd(0.5) == pytest.approx(math.sqrt(0.25 / 500))


def test_small_reproduction_has_every_row_check_and_a_readable_run(tmp_path):
    r = circles.reproduction((0, 1), epochs=2, out=tmp_path)
    pub = published("circles")
    assert [row.key for row in r.rows] == list(pub.figures)
    assert [c.key for c in r.checks] == list(pub.claims)
    assert all(row.n == 2 and row.tolerance >= parts.binomial_sd(row.published) for row in r.rows)
    surfaces = [s for s in r.sections if s.model is not None]
    assert len(surfaces) == 3 and len(r.runs) == 3
    for section in surfaces:
        rec = gp.load(section.runs[0])
        assert rec.meta["status"] == "done" and len(rec) == 32
        assert len(section.table) == len(rec.layers)
        assert section.data[0].shape == (500, 2)
    depth_rows = r.sections[-1].table
    assert [row["hidden ReLU layers"] for row in depth_rows] == [5, 15, 20]
    json.dumps(r.to_dict(), allow_nan=False)


def test_bad_input_says_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match="activation='sigmod' is not one of: tanh, relu"):
        parts.Net("x", "sigmod", 5, "uniform", "uniform")
    with pytest.raises(ValueError, match="depth=0 must be an int >= 1"):
        parts.relu_net(0)
    with pytest.raises(ValueError, match="distinct"):
        parts.train_members(parts.TANH1, [1, 1], epochs=1, data=DATA)
    with pytest.raises(ValueError, match="epochs=0 must be an int >= 1"):
        parts.train_members(parts.TANH1, [1], epochs=0, data=DATA)
    with pytest.raises(ValueError, match="must include 15 and 20"):
        circles.reproduction((0,), epochs=1, depths=(10, 15), out=tmp_path)
