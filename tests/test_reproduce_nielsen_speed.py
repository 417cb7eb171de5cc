"""nielsen-speed: ||dC/db^l|| against a numpy backprop of Nielsen's BP1-BP4, the training
curves against his gradient descent, the layer ordering on real MNIST, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import gradprobe as gp
from gradprobe.lab.reproduce import nielsen_speed as ns
from gradprobe.lab.reproduce import nielsen_speed_parts as parts
from gradprobe.lab.reproduce.published import published
from gradprobe.lab.reproduce.registry import module_for

requires_mnist = pytest.mark.usefixtures("mnist_source")
SMALL = (784, 30, 30, 30, 10)
DEEP = (784, 30, 30, 30, 30, 10)


def synthetic(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n images with pixels in [0, 1) and labels 0..9, like MNIST's."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 784, generator=g, dtype=torch.float64), torch.randint(0, 10, (n,))


def numpy_params(model: nn.Sequential) -> tuple[list[np.ndarray], list[np.ndarray]]:
    linears = [m for m in model if isinstance(m, nn.Linear)]
    return (
        [m.weight.detach().numpy().copy() for m in linears],
        [m.bias.detach().numpy().copy() for m in linears],
    )


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def backprop_bias(weights, biases, x, y, output="sigmoid", average=True) -> list[np.ndarray]:
    """network2.backprop, one image at a time (BP1-BP4), summed and (by default) averaged.

    output="sigmoid": CrossEntropyCost, delta^L = a - y (BP1 for Nielsen's cost); the planted
    errors: "softmax" (delta^L = softmax(z) - y) and "quadratic" (delta^L = (a - y) s'(z)).
    """
    nabla = [np.zeros_like(b) for b in biases]
    for xi, label in zip(x, y):
        a, zs, acts = xi, [], [xi]
        for w, b in zip(weights, biases):
            zs.append(w @ a + b)
            a = sigmoid(zs[-1])
            acts.append(a)
        t = np.eye(10)[label]
        if output == "softmax":
            e = np.exp(zs[-1] - zs[-1].max())
            delta = e / e.sum() - t
        elif output == "quadratic":
            delta = (a - t) * a * (1 - a)
        else:
            delta = a - t  # BP1 with the cross-entropy cost
        nabla[-1] += delta  # BP3: dC/db = delta
        for layer in range(2, len(weights) + 1):
            sp = acts[-layer] * (1 - acts[-layer])  # sigma'(z^l)
            delta = (weights[-layer + 1].T @ delta) * sp  # BP2
            nabla[-layer] += delta
    return [g / len(x) if average else g for g in nabla]


def oracle_norms(sizes, seed, x, y, **planted) -> np.ndarray:
    w, b = numpy_params(parts.nielsen_network(sizes, seed))
    grads = backprop_bias(w, b, x.numpy(), y.numpy(), **planted)
    return np.array([np.linalg.norm(g) for g in grads[:-1]])


@pytest.mark.parametrize("sizes", [SMALL, DEEP])
def test_initial_speeds_equal_numpy_backprop_of_bp1_to_bp4(sizes):
    x, y = synthetic(16)
    ours = parts.initial_speeds(sizes, [0, 3], x, y)
    assert ours.shape == (2, len(sizes) - 2)
    for row, seed in zip(ours, [0, 3]):
        np.testing.assert_allclose(row, oracle_norms(sizes, seed, x, y), rtol=1e-10)


@pytest.mark.parametrize(
    "planted",
    [{"output": "softmax"}, {"output": "quadratic"}, {"average": False}],
    ids=["softmax-output", "quadratic-cost", "summed-not-averaged"],
)
def test_a_planted_error_changes_the_numbers(planted):
    x, y = synthetic(16)
    ours = parts.initial_speeds(SMALL, [0], x, y)[0]
    wrong = oracle_norms(SMALL, 0, x, y, **planted)
    assert np.all(np.abs(wrong / ours - 1) > 0.05), (ours, wrong)


def test_network_is_nielsens_init_in_float64():
    model = parts.nielsen_network(DEEP, 7)
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert all(m.weight.dtype == torch.float64 for m in linears)
    assert [type(m).__name__ for m in model if not isinstance(m, nn.Linear)] == ["Sigmoid"] * 4
    w = torch.cat([m.weight.flatten() * m.in_features**0.5 for m in linears[1:]])  # N(0, 1)
    b = torch.cat([m.bias for m in linears])  # N(0, 1)
    w, b = w.detach(), b.detach()
    for v in (w, b):
        assert abs(float(v.mean())) < 0.15 and abs(float(v.std()) - 1) < 0.15
    same = parts.nielsen_network(DEEP, 7)
    assert torch.equal(same.fc1.weight, model.fc1.weight)


def test_probe_record_of_init_equals_initial_speeds(tmp_path):
    x, y = synthetic(12)
    run = parts.record_initial(DEEP, 2, x, y, tmp_path / "init")
    rec = gp.load(run)
    assert rec.status == "done" and len(rec.steps) == 1
    want = parts.initial_speeds(DEEP, [2], x, y)[0]
    np.testing.assert_allclose(parts.hidden_speeds(rec, 4)[0], want, rtol=1e-10)
    columns = [rec.layers.index(f"fc{i}") for i in range(1, 5)]
    np.testing.assert_allclose(rec["bias_grad_norm"][0, columns], want, rtol=1e-10)


def test_training_curves_equal_nielsens_gradient_descent(tmp_path):
    x, y = synthetic(20, seed=1)
    eta, lmbda, epochs = 0.5, 5.0, 4
    ours = parts.train_speeds(SMALL, 1, x, y, tmp_path / "c", epochs=epochs, eta=eta, lmbda=lmbda)
    w, b = numpy_params(parts.nielsen_network(SMALL, 1))
    n, want = len(x), []
    for _ in range(epochs):  # network2.update_mini_batch with the whole set as one batch
        grads_b, grads_w = backprop_bias(w, b, x.numpy(), y.numpy()), weight_grads(w, b, x, y)
        want.append([np.linalg.norm(g) for g in grads_b[:-1]])
        w = [(1 - eta * lmbda / n) * wi - eta * gw for wi, gw in zip(w, grads_w)]
        b = [bi - eta * gb for bi, gb in zip(b, grads_b)]
    np.testing.assert_allclose(ours, np.array(want), rtol=1e-9)
    assert gp.load(tmp_path / "c").status == "done"


def weight_grads(weights, biases, x, y) -> list[np.ndarray]:
    """dC/dW (averaged over the images) by the same backprop, BP4: a^{l-1} delta^l."""
    xs, nabla = x.numpy(), [np.zeros_like(w) for w in weights]
    for xi, label in zip(xs, y.numpy()):
        acts = [xi]
        for w, b in zip(weights, biases):
            acts.append(sigmoid(w @ acts[-1] + b))
        delta = acts[-1] - np.eye(10)[label]
        nabla[-1] += np.outer(delta, acts[-2])
        for layer in range(2, len(weights) + 1):
            delta = (weights[-layer + 1].T @ delta) * acts[-layer] * (1 - acts[-layer])
            nabla[-layer] += np.outer(delta, acts[-layer - 1])
    return [g / len(xs) for g in nabla]


def test_checks_fail_when_the_order_breaks(tmp_path):
    pub = published(ns.NAME)
    good = np.array([[0.01, 0.05, 0.25], [0.02, 0.06, 0.3]])
    bad = np.array([[0.01, 0.05, 0.25], [0.09, 0.06, 0.3]])  # seed 1: layer 1 > layer 2
    assert ns.earlier_slower(pub, {SMALL: good}).holds
    check = ns.earlier_slower(pub, {SMALL: bad})
    assert not check.holds and "ordered in 1 of 2 seeds" in check.evidence
    curve = np.tile([0.01, 0.05, 0.25], (6, 1))
    assert ns.curves_keep_order(pub, {SMALL: {0: curve}}).holds
    curve[2:4, 0] = 0.07  # hidden 1 overtakes hidden 2 at epochs 2 and 3
    check = ns.curves_keep_order(pub, {SMALL: {0: curve}})
    assert not check.holds and "seed 0 out of order at 2 of 6 epochs (2..3)" in check.evidence
    assert "largest ratio hidden1/hidden2 = 1.40 (seed 0, epoch 2)" in check.evidence
    run = parts.NetworkRun(SMALL, good, tmp_path, curves={0: curve, 1: curve[[0, 1, 4, 5]]})
    note = ns.curve_note([run], first=1)
    assert (
        "seed 1 keeps the order" in note and "1 of 2 runs do not ([784,30,30,30,10] seed 0)" in note
    )


@requires_mnist
def test_earlier_layers_slower_on_100_mnist_images():
    x, y = parts.load_images(100)
    assert x.dtype == torch.float64 and float(x.min()) >= 0 and float(x.max()) < 1
    for sizes in parts.NETWORKS:
        speeds = parts.initial_speeds(sizes, [0, 1, 2], x, y)
        assert parts.ordered(speeds).all(), (sizes, speeds)
        assert (parts.layer_ratios(speeds) < 0.5).all()  # about 0.2 per layer


@requires_mnist
def test_small_reproduction_has_rows_checks_and_drawable_runs(tmp_path):
    lines = []
    r = ns.speed_reproduction(
        [0, 1, 2], out=tmp_path, n_images=100, epochs=3, curve_seeds=2, log=lines.append
    )
    assert [row.key for row in r.rows] == list(published(ns.NAME).figures)
    assert all(len(row.values) == 3 for row in r.rows)
    assert [c.key for c in r.checks] == ["earlier-slower", "curves-keep-order"]
    assert r.checks[0].holds and "ordered in 3 of 3 seeds" in r.checks[0].evidence
    assert "of 6 runs keep the order" in r.checks[1].evidence
    assert any("SHORTENED" in n for n in r.notes) and len(lines) == 9
    from gradprobe.viz import figures

    for section in r.sections:
        assert len(section.runs) == 3 and set(section.figures) <= set(figures.__all__)
        for run in section.runs:
            rec = gp.load(run)
            assert rec.status == "done" and "delta_norm" in rec
    rec = gp.load(r.sections[1].runs[2])  # [784,30,30,30,30,10], seed 0: its curve
    seed0 = [row.values[0] for row in r.rows[-4:]]  # the rows of [784,30,30,30,30,10]
    np.testing.assert_allclose(parts.hidden_speeds(rec, 4)[0], seed0, rtol=1e-10)
    json.loads(json.dumps(r.to_dict()))


def test_module_is_registered_with_cheap_defaults():
    assert module_for("nielsen-speed") is ns
    assert ns.DEFAULT_SEEDS >= 20 and ns.FULL_SEEDS >= ns.DEFAULT_SEEDS


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda x, y: parts.initial_speeds((784, 30, 5), [0], x, y), "10 outputs"),
        (lambda x, y: parts.initial_speeds((784, 10), [0], x, y), "hidden layer"),
        (lambda x, y: parts.initial_speeds(SMALL, [-1], x, y), "seed=-1"),
        (lambda x, y: parts.initial_speeds(SMALL, [0], x[:, :10], y), "shape"),
        (lambda x, y: parts.initial_speeds(SMALL, [0], x, y + 10), "labels must lie"),
        (lambda x, y: parts.initial_speeds(SMALL, [0], x, y.double()), "integer labels"),
        (lambda x, y: parts.train_speeds(SMALL, 0, x, y, "/nonexistent", epochs=0), "epochs=0"),
    ],
)
def test_bad_input_says_what_was_wrong(call, match):
    x, y = synthetic(4)
    with pytest.raises(ValueError, match=match):
        call(x, y)


def test_bad_seeds_and_curve_counts(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        ns.speed_reproduction([], out=tmp_path)
    with pytest.raises(ValueError, match="curve_seeds=3 must be an int in 1..2"):
        ns.speed_reproduction([0, 1], out=tmp_path, curve_seeds=3)
    with pytest.raises(ValueError, match="n_images"):
        parts.load_images(2.5)
