"""`reproduce chain`: the chain's per-layer gradients against closed forms, Nielsen's product
against autograd and finite differences, his exploding factor 25, and bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from gradprobe.lab.datasets.synthetic import load_blobs
from gradprobe.lab.reproduce import reproduce
from gradprobe.lab.reproduce.chain import record_run
from gradprobe.lab.reproduce.chain_parts import (
    DEPTH,
    Variant,
    chain_gradients,
    exploding_chain,
    neuron_chain,
    random_neuron_chain,
    sigmoid_slope,
    sigmoid_slope_max,
)

RTOL = 1e-12  # float64: a handful of roundings per layer (see chain.RTOL)


@pytest.fixture(scope="module")
def blobs():
    data = load_blobs(seed=3, n_per_class=40)
    return data.x_train, data.y_train


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _closed_form(act: str, g: float, x: np.ndarray, labels: np.ndarray):
    """dz and dW per layer by hand: W = g I is diagonal, so every unit is its own chain."""
    phi = (lambda z: np.maximum(z, 0.0)) if act == "relu" else _sigmoid
    slope = (lambda z: (z > 0).astype(float)) if act == "relu" else lambda z: phi(z) * (1 - phi(z))
    a, zs, acts = x, [], [x]
    for layer in range(DEPTH):
        zs.append(g * a)
        a = phi(zs[-1]) if layer < DEPTH - 1 else zs[-1]
        acts.append(a)
    y = np.eye(2)[labels]
    dz = [(_sigmoid(zs[-1]) - y) / len(x)]  # sigmoid + cross-entropy, mean over points
    for layer in range(DEPTH - 2, -1, -1):
        dz.insert(0, g * dz[0] * slope(zs[layer]))
    dw = [d.T @ acts[i] for i, d in enumerate(dz)]
    return np.array([np.linalg.norm(d) for d in dz]), np.array([np.linalg.norm(w) for w in dw])


@pytest.mark.parametrize("act", ["relu", "sigmoid"])
@pytest.mark.parametrize("g", [0.8, 1.1])
def test_chain_gradients_equal_the_closed_form(blobs, act, g):
    x, labels = blobs
    got = chain_gradients(Variant(act, g), x, labels)
    dz, dw = _closed_form(act, g, x.double().numpy(), labels.numpy())
    np.testing.assert_allclose(got.dz, dz, rtol=1e-10)
    np.testing.assert_allclose(got.dw, dw, rtol=1e-10)
    assert got.dz.shape == got.dw.shape == got.db.shape == (DEPTH,)


@pytest.mark.parametrize("g", [0.8, 1.1])
def test_relu_dz_is_exactly_g_times_the_layer_above(blobs, g):
    x, labels = blobs
    chain = chain_gradients(Variant("relu", g), x, labels)
    np.testing.assert_allclose(chain.ratios[:-1], g, rtol=RTOL)  # hidden to hidden
    np.testing.assert_allclose(chain.live_ratios, g, rtol=RTOL)  # every step, passed entries
    np.testing.assert_allclose(chain.db[:-2] / chain.db[1:-1], g, rtol=RTOL)  # db = sum of dz
    # the activations grow toward the input as dz shrinks: dw of fc2..fc9 does not move
    np.testing.assert_allclose(chain.dw[1:9], chain.dw[1], rtol=RTOL)
    blocked = float(((x < 0).double()).mean())
    assert chain.blocked == pytest.approx(blocked)
    assert blocked > 0 and chain.ratios[-1] < g  # the output step loses the blocked entries


def test_relu_ratios_are_all_exact_when_every_input_is_positive(blobs):
    x, labels = blobs
    chain = chain_gradients(Variant("relu", 0.8), x.abs() + 0.1, labels)
    assert chain.blocked == 0.0
    np.testing.assert_allclose(chain.ratios, 0.8, rtol=RTOL)


@pytest.mark.parametrize("g", [0.8, 1.1])
def test_sigmoid_chain_shrinks_by_at_least_4x_per_layer(blobs, g):
    x, labels = blobs
    chain = chain_gradients(Variant("sigmoid", g), x, labels)
    assert np.all(chain.ratios <= g / 4)  # sigma' <= 1/4 and W = g I
    assert chain.blocked == 0.0
    if g < 1:
        assert np.all(chain.ratios <= 0.25)
    assert chain.dz[0] < 1e-5 * chain.dz[-1]


def _cost(w, b, x, y):
    a = x
    for wj, bj in zip(w, b):
        a = _sigmoid(wj * a + bj)
    return 0.5 * (a - y) ** 2


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_nielsen_product_equals_autograd_and_finite_differences(seed):
    chain = random_neuron_chain(seed)
    assert chain.relative_error <= RTOL
    a = [chain.x]
    for wj, bj in zip(chain.w, chain.b):
        a.append(_sigmoid(wj * a[-1] + bj))
    slope = np.array([s * (1 - s) for s in a[1:]])
    np.testing.assert_allclose(chain.slope, slope, rtol=1e-12)
    by_hand = slope[0] * np.prod(chain.w[1:] * slope[1:]) * (a[-1] - chain.y)
    assert chain.grad_b[0] == pytest.approx(by_hand, rel=1e-12)
    h = 1e-6
    for j in range(len(chain.b)):
        up, down = chain.b.copy(), chain.b.copy()
        up[j] += h
        down[j] -= h
        fd = (_cost(chain.w, up, chain.x, chain.y) - _cost(chain.w, down, chain.x, chain.y)) / 2 / h
        assert chain.grad_b[j] == pytest.approx(fd, rel=1e-5, abs=1e-12)
    np.testing.assert_allclose(chain.factors, slope[:-1] * chain.w[1:], rtol=1e-12)


def test_exploding_chain_grows_25x_per_neuron():
    chain = exploding_chain()
    assert chain.z.tolist() == [0.0] * 4
    assert chain.factors.tolist() == [25.0, 25.0, 25.0]
    assert chain.grad_b[0] / chain.grad_b[-1] == 25.0**3
    assert exploding_chain(w=10.0, n=6).factors.tolist() == [2.5] * 5


def test_sigmoid_slope_is_largest_at_zero():
    assert sigmoid_slope(0.0) == 0.25
    assert sigmoid_slope_max() == (0.25, 0.0)
    assert sigmoid_slope(2.0) == pytest.approx(_sigmoid(2.0) * (1 - _sigmoid(2.0)), rel=1e-15)


def test_probe_delta_norm_is_our_db(blobs, tmp_path):
    x, labels = blobs
    rec = record_run(Variant("sigmoid", 0.8), x, labels, tmp_path / "run", steps=2)
    ours = chain_gradients(Variant("sigmoid", 0.8), x, labels)
    assert rec.layers == [f"fc{i}" for i in range(1, DEPTH + 1)]
    np.testing.assert_allclose(rec["delta_norm"][0], ours.db, rtol=1e-10)
    assert rec.status == "done" and len(rec.steps) == 2


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda x, y: chain_gradients(Variant("sigmod", 0.8), x, y), "sigmod"),
        (lambda x, y: chain_gradients(Variant("relu", 0.0), x, y), "g=0.0"),
        (lambda x, y: chain_gradients(Variant("relu", math.nan), x, y), "g=nan"),
        (lambda x, y: chain_gradients(Variant("relu", 0.8), x[:, :1], y), r"shape \(n, 2\)"),
        (lambda x, y: chain_gradients(Variant("relu", 0.8), x, y[:-1]), "labels of shape"),
        (lambda x, y: chain_gradients(Variant("relu", 0.8), x * math.inf, y), "NaN or inf"),
        (lambda x, y: neuron_chain([1.0, 2.0], [0.0], 1.0, 0.0), "same number"),
        (lambda x, y: neuron_chain([1.0, math.nan], [0.0, 0.0], 1.0, 0.0), "finite"),
        (lambda x, y: exploding_chain(w=-100.0), "w=-100.0"),
        (lambda x, y: sigmoid_slope_max(n_half=0), "n_half=0"),
    ],
)
def test_bad_input_says_what_was_wrong(blobs, call, match):
    with pytest.raises(ValueError, match=match):
        call(*blobs)


def test_record_run_needs_a_step(blobs, tmp_path):
    with pytest.raises(ValueError, match="steps=0"):
        record_run(Variant("relu", 0.8), *blobs, tmp_path / "r", steps=0)


def test_reproduce_chain_agrees_and_writes_its_runs(tmp_path):
    (result,) = reproduce("chain", seeds=[4], out=tmp_path)
    assert all(r.agrees for r in result.rows) and len(result.rows) == 4
    assert {c.key: c.holds for c in result.checks} == dict.fromkeys(
        ("chain-rule", "relu-exact", "sigmoid-chain-vanishes", "exploding"), True
    )
    for section in result.sections:
        assert all((run / "run.json").is_file() for run in section.runs)
    tables = [s.table for s in result.sections]
    assert [len(t) for t in tables] == [DEPTH] * 4 + [4, 4]
    saved = json.loads((tmp_path / "chain" / "reproduction.json").read_text())
    assert saved["seeds"] == [4] and saved["settings"]["dtype"] == "float64"
    assert "not located" in " ".join(result.notes)
