"""predict(model): the chain read from a model's weights, residual and LayerNorm rules against
autograd, and the layers the theory does not cover."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from gradprobe.lab.models import mlp, residual_mlp
from gradprobe.lab.theory_spec import lab_spec
from gradprobe.theory import NetworkSpec, NotPredictedError, predict, spec_from_model
from tests.theory_oracle import linear_names, measure_model

torch.set_num_threads(1)
N_SE = 4.0  # measured and predicted agree within max(0.03, 4 standard errors) per layer


def _agree(pred, build, n_in, seeds=6):
    model = build(torch.Generator().manual_seed(0))
    names = linear_names(model)
    assert pred.layers == names
    mean, se = measure_model(build, names, n_in=n_in, seeds=seeds)
    predicted = pred["log_gain"][:-1]
    assert np.all(np.abs(mean - predicted) <= np.maximum(0.03, N_SE * se)), mean - predicted
    return mean


def test_residual_relu_blocks_grow_by_ln2_per_block():
    # THEORY.md: He ReLU blocks with alpha = 1 grow as 2^L (+0.693 per block)
    def build(g):
        return residual_mlp(6, 256, in_features=256, out_features=256, generator=g)

    pred = predict(build(torch.Generator().manual_seed(0)))
    gains = pred["log_gain"]
    np.testing.assert_allclose(gains[2:-2], math.log(2), atol=0.02)  # weights: sampled
    spec = lab_spec("relu", "he_normal", [256] * 8, model="residual_mlp")
    np.testing.assert_allclose(predict(spec)["log_gain"][1:-2], math.log(2), atol=1e-12)
    _agree(predict(spec), build, 256)


def test_residual_with_small_alpha_stays_bounded():
    alpha = 1 / math.sqrt(6)

    def build(g):
        return residual_mlp(
            6, 256, in_features=256, out_features=256, alpha=alpha, activation="tanh",
            init="glorot_normal", generator=g,
        )  # fmt: skip

    spec = lab_spec("tanh", "glorot_normal", [256] * 8, model="residual_mlp", alpha=alpha)
    pred = predict(spec)
    assert 0 < pred["cum_log_gain"][1] - pred["cum_log_gain"][6] < 1.0  # e^{sum ln(1 + chi/6)}
    _agree(pred, build, 256)


def test_layernorm_gain_is_independent_of_sigma_w():
    # THEORY.md: LN on pre-activations, tanh: E[phi'^2] / E[phi^2] at z ~ N(0,1) = +0.164
    for gain in (1.0, 3.0):
        spec = lab_spec("tanh", "glorot_normal", [256] * 9, norm="layer", gain=gain)
        np.testing.assert_allclose(predict(spec)["log_gain"][1:-2], 0.1636, atol=5e-4)

    def build(g):
        return mlp([256] * 9, "tanh", "glorot_normal", norm="layer", generator=g)

    _agree(predict(lab_spec("tanh", "glorot_normal", [256] * 9, norm="layer")), build, 256)


def test_spec_from_lab_mlp_reads_the_weights():
    model = mlp([64, 128, 128, 10], "tanh", "glorot_normal", bias_init="normal",
                generator=torch.Generator().manual_seed(3))  # fmt: skip
    spec = spec_from_model(model)
    expected = lab_spec("tanh", "glorot_normal", [64, 128, 128, 10], bias_init="normal")
    assert spec.names == ["fc1", "fc2", "fc3"]
    for got, want in zip(spec.layers, expected.layers):
        assert got.sigma_w2 == pytest.approx(want.sigma_w2, rel=0.05)
        assert got.sigma_b2 == pytest.approx(1.0, rel=0.5)  # N(0, 1) biases, 10..128 of them
        w = dict(model.named_modules())[got.name].weight.detach().double()
        assert got.sigma_w2 == pytest.approx(w.shape[1] * float(w.pow(2).mean()), rel=1e-12)
    assert [x.activation.name if x.activation else None for x in spec.layers] == [
        "tanh",
        "tanh",
        None,
    ]


def test_conv_layers_use_kernel_fan_in():
    conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, padding=1))
    spec = spec_from_model(conv)
    w = conv[0].weight.detach().double()
    assert spec.layers[0].sigma_w2 == pytest.approx(27 * float(w.pow(2).mean()))
    assert spec.layers[0].width == 8 and spec.layers[0].fan_in == 27
    strided = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.Linear(8, 2))
    with pytest.raises(NotPredictedError, match=r"Conv2d with stride \(2, 2\)"):
        predict(strided)


class _Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(8, 16)
        self.attn = nn.MultiheadAttention(16, 2)
        self.out = nn.Linear(16, 2)


@pytest.mark.parametrize(
    ("model", "kind"),
    [
        (
            nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2)),
            "BatchNorm1d",
        ),
        (_Attention(), "MultiheadAttention"),
        (nn.Sequential(nn.Linear(4, 8), nn.Softmax(-1), nn.Linear(8, 2)), "Softmax"),
        (nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 2)), "Dropout"),
    ],
    ids=["batchnorm", "attention", "softmax", "dropout"],
)
def test_uncovered_layers_are_named(model, kind):
    with pytest.raises(NotPredictedError, match=kind):
        predict(model)
    pred = predict(model, strict=False)
    assert any(kind in (f or "") for f in pred.flags)
    assert np.all(np.isnan(pred["q"][[0]])) or np.isnan(pred["q"][-1])
    assert pred.verdict().startswith("not predicted")


def test_dropout_in_eval_mode_is_transparent():
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Tanh(), nn.Linear(8, 2)).eval()
    assert predict(model).flags == [None, None]


def test_prediction_fields_json_and_repr(tmp_path):
    pred = predict(NetworkSpec.mlp("tanh", 1.0, 0.05, depth=4, width=64), input_var=2.0)
    assert pred["q"][0] == pytest.approx(2.05)
    assert pred["chi"][:-1] == pytest.approx(np.exp(pred["log_gain"][:-1]))
    assert pred.total_log_gain == pytest.approx(np.nansum(pred["log_gain"]))
    assert pred.chi_1 == pytest.approx(1.0 * 0.7592, abs=1e-3) and pred.fixed["phase"] == "ordered"
    data = json.loads(pred.to_json(tmp_path / "p.json"))
    assert data == json.loads((tmp_path / "p.json").read_text())
    assert data["values"]["log_gain"][-1] is None and data["layers"] == pred.layers
    assert "chi_1=0.759" in repr(pred) and "ordered" in repr(pred)
    with pytest.raises(KeyError, match="not one of"):
        pred["nope"]


def test_bad_input():
    with pytest.raises(ValueError, match="input_var=-1.0 must be a finite number >= 0"):
        predict(NetworkSpec.mlp("relu", 2.0, depth=2, width=8), input_var=-1.0)
    with pytest.raises(ValueError, match="sigma_w2=-2.0 must be a finite number >= 0"):
        NetworkSpec.mlp("relu", -2.0, depth=2, width=8)
    with pytest.raises(ValueError, match="sigma_b2=-0.1"):
        NetworkSpec.mlp("relu", 2.0, -0.1, depth=2, width=8)
    with pytest.raises(ValueError, match="needs a torch.nn.Module or a NetworkSpec"):
        predict("model")
    with pytest.raises(ValueError, match="holds no Linear or Conv layer"):
        predict(nn.Sequential(nn.ReLU()))
