"""Initialisers: empirical moments of large layers match each formula within a few standard
errors; orthogonal and identity exactly; bias conventions; determinism; clear errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gradprobe.lab.init import (
    INITIALISERS,
    get_initialiser,
    init_model_,
    initialise_,
    weight_variance,
)

FAN_IN, FAN_OUT = 1000, 500  # unequal, so fan_in / fan_out mix-ups show
Z = 5.0  # standard errors allowed: a false failure has probability ~6e-7 per check
# Kurtosis of each sampler: Var(s^2) = (kurt - 1) Var^2, so SE(s^2) = Var sqrt((kurt - 1) / N)
KURTOSIS = {"normal": 3.0, "symmetric_uniform": 1.8, "uniform": 1.8}
# Hand-written Var(W) for FAN_IN=1000, FAN_OUT=500 (independent of the registry lambdas)
HAND_VARIANCE = {
    "nielsen": 1 / 1000,
    "standard_normal": 1.0,
    "glorot_uniform": 2 / 1500,
    "glorot_normal": 2 / 1500,
    "he_uniform": 2 / 1000,
    "he_normal": 2 / 1000,
    "lecun_normal": 1 / 1000,
    "orthogonal": 1 / 1000,
    "uniform": 1 / 12,
    "lazyprogrammer": 1 / 1500,
    "torch_default": 1 / 3000,
}
RANDOM = [n for n in INITIALISERS if n not in ("orthogonal", "scaled_identity", "torch_default")]


def _layer(name: str, seed: int = 0, **kwargs) -> nn.Linear:
    shape = (FAN_OUT, FAN_OUT) if name == "scaled_identity" else (FAN_IN, FAN_OUT)
    layer = nn.Linear(*shape).requires_grad_(False)
    return initialise_(layer, name, generator=torch.Generator().manual_seed(seed), **kwargs)


def _assert_moments(w: torch.Tensor, var: float, mean: float, kurtosis: float) -> None:
    w = w.detach().double().flatten()
    n = w.numel()
    assert abs(float(w.mean()) - mean) < Z * math.sqrt(var / n)
    assert abs(float(w.var()) - var) < Z * var * math.sqrt((kurtosis - 1) / n)


def test_hand_table_covers_every_initialiser():
    assert set(HAND_VARIANCE) | {"scaled_identity"} == set(INITIALISERS)


@pytest.mark.parametrize("name", sorted(HAND_VARIANCE))
def test_weight_variance_formula_by_hand(name):
    assert weight_variance(name, FAN_IN, FAN_OUT) == pytest.approx(HAND_VARIANCE[name], rel=1e-12)


@pytest.mark.parametrize("name", RANDOM)
def test_empirical_moments_match_formula(name):
    spec = get_initialiser(name)
    mean = 0.5 if name == "uniform" else 0.0  # U(0, 1)
    _assert_moments(_layer(name).weight, HAND_VARIANCE[name], mean, KURTOSIS[spec.sampler])


@pytest.mark.parametrize("name", ["nielsen", "glorot_uniform", "he_normal", "lecun_normal"])
def test_gain_multiplies_the_std(name):
    var = HAND_VARIANCE[name] * 0.25
    assert weight_variance(name, FAN_IN, FAN_OUT, gain=0.5) == pytest.approx(var)
    kurt = KURTOSIS[get_initialiser(name).sampler]
    _assert_moments(_layer(name, gain=0.5).weight, var, 0.0, kurt)


def test_uniform_low_high():
    w = _layer("uniform", low=-2.0, high=4.0).weight
    _assert_moments(w, 36 / 12, 1.0, KURTOSIS["uniform"])
    assert float(w.min()) >= -2.0 and float(w.max()) <= 4.0


def test_torch_default_is_torch_linear_init():
    w = _layer("torch_default").weight
    bound = 1 / math.sqrt(FAN_IN)  # kaiming_uniform_(a=sqrt(5)) on a Linear
    assert float(w.abs().max()) <= bound
    _assert_moments(w, 1 / (3 * FAN_IN), 0.0, KURTOSIS["uniform"])


@pytest.mark.parametrize(("rows", "cols", "gain"), [(300, 700, 1.0), (700, 300, 1.5), (64, 64, 2)])
def test_orthogonal_is_orthogonal_times_gain(rows, cols, gain):
    w = initialise_(nn.Linear(cols, rows), "orthogonal", gain=gain).weight.detach().double()
    gram = w @ w.T if rows <= cols else w.T @ w
    eye = torch.eye(min(rows, cols), dtype=torch.float64)
    torch.testing.assert_close(gram, gain**2 * eye, atol=1e-5, rtol=0)
    mean_square = float(w.square().mean())
    assert mean_square == pytest.approx(weight_variance("orthogonal", cols, rows, gain=gain), 1e-5)


@pytest.mark.parametrize("g", [0.8, 1.1])
def test_scaled_identity_exact(g):
    layer = initialise_(nn.Linear(5, 5), "scaled_identity", g=g)
    assert torch.equal(layer.weight, g * torch.eye(5))
    assert torch.equal(layer.bias, torch.zeros(5))
    chain = initialise_(nn.Linear(1, 1).requires_grad_(False), "scaled_identity", g=g, gain=2.0)
    assert chain.weight.item() == pytest.approx(2 * g)
    assert weight_variance("scaled_identity", 5, 5, g=g) == pytest.approx(g * g / 5)


@pytest.mark.parametrize("name", INITIALISERS)
def test_bias_convention(name):
    b = _layer(name).bias.detach().double()
    if name in ("nielsen", "standard_normal"):  # N(0, 1), Nielsen
        _assert_moments(b, 1.0, 0.0, KURTOSIS["normal"])
    elif name == "torch_default":  # U(+-1/sqrt(fan_in))
        assert float(b.abs().max()) <= 1 / math.sqrt(FAN_IN) and float(b.abs().max()) > 0
    else:
        assert torch.equal(b, torch.zeros_like(b))


@pytest.mark.parametrize("name", ["nielsen", "he_normal", "torch_default"])
def test_bias_override(name):
    assert torch.equal(_layer(name, bias="zeros").bias, torch.zeros(FAN_OUT))
    assert torch.equal(_layer(name, bias=0.25).bias, torch.full((FAN_OUT,), 0.25))
    _assert_moments(_layer(name, bias="normal").bias, 1.0, 0.0, KURTOSIS["normal"])


def test_conv_fan_in_is_channels_times_kernel():
    conv = nn.Conv2d(64, 128, kernel_size=5)
    initialise_(conv, "he_normal", generator=torch.Generator().manual_seed(0))
    _assert_moments(conv.weight, 2 / (64 * 25), 0.0, KURTOSIS["normal"])
    conv1d = initialise_(nn.Conv1d(100, 200, 3), "glorot_uniform")
    fan_in, fan_out = 100 * 3, 200 * 3  # torch's conv fans
    _assert_moments(conv1d.weight, 2 / (fan_in + fan_out), 0.0, KURTOSIS["symmetric_uniform"])


def test_lstm_gate_blocks_each_get_their_own_fans():
    lstm = nn.LSTM(300, 200, num_layers=2)
    init_model_(lstm, "glorot_normal", generator=torch.Generator().manual_seed(0))
    for block in lstm.weight_ih_l0.split(200):  # per gate: fan_in 300, fan_out 200
        _assert_moments(block, 2 / 500, 0.0, KURTOSIS["normal"])
    for block in lstm.weight_hh_l1.split(200):
        _assert_moments(block, 2 / 400, 0.0, KURTOSIS["normal"])
    for name, p in lstm.named_parameters():
        if name.startswith("bias"):
            assert torch.equal(p, torch.zeros_like(p))


def test_gru_orthogonal_per_gate_block():
    gru = init_model_(nn.GRU(16, 32), "orthogonal", gain=1.3)
    for block in gru.weight_hh_l0.detach().double().split(32):  # (32, 32) each, 3 gates
        eye = torch.eye(32, dtype=torch.float64)
        torch.testing.assert_close(block @ block.T, 1.69 * eye, atol=1e-5, rtol=0)


def test_rnn_scaled_identity_irnn():
    rnn = initialise_(nn.RNN(8, 8, nonlinearity="relu"), "scaled_identity")
    assert torch.equal(rnn.weight_hh_l0, torch.eye(8))


@pytest.mark.parametrize("name", INITIALISERS)
def test_generator_determinism(name):
    def build(seed):
        model = nn.Sequential(nn.Linear(6, 6), nn.Linear(6, 6))
        return init_model_(model, name, generator=torch.Generator().manual_seed(seed))

    a, b, c = build(7), build(7), build(8)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    if name != "scaled_identity":
        assert not torch.equal(c[0].weight, a[0].weight)


def test_generator_leaves_global_rng_alone():
    layer = nn.Linear(50, 50)
    before = torch.get_rng_state()
    for name in INITIALISERS:
        initialise_(layer, name, generator=torch.Generator().manual_seed(3))
    assert torch.equal(torch.get_rng_state(), before)


def test_errors_are_clear():
    layer = nn.Linear(3, 4)
    with pytest.raises(ValueError, match="init='xavier' is not one of: nielsen, standard_normal"):
        initialise_(layer, "xavier")
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) std; allowed: low, high"):
        initialise_(layer, "uniform", std=1.0)
    with pytest.raises(ValueError, match=r"allowed: none"):
        initialise_(layer, "he_normal", mode="fan_out")
    with pytest.raises(ValueError, match=r"square weight, got shape \(4, 3\)"):
        initialise_(layer, "scaled_identity")
    with pytest.raises(ValueError, match="gain=-1.0 must be a finite number >= 0"):
        initialise_(layer, "glorot_normal", gain=-1.0)
    with pytest.raises(ValueError, match="init 'uniform' takes no gain"):
        initialise_(layer, "uniform", gain=2.0)
    with pytest.raises(ValueError, match="bias='ones' is not one of: None, zeros, normal"):
        initialise_(layer, "he_normal", bias="ones")
    with pytest.raises(ValueError, match="low < high"):
        initialise_(layer, "uniform", low=1.0, high=0.0)
    with pytest.raises(TypeError, match="cannot initialise BatchNorm1d; supported: Linear"):
        initialise_(nn.BatchNorm1d(3), "he_normal")
    with pytest.raises(ValueError, match="no Linear, Conv or RNN layer"):
        init_model_(nn.Sequential(nn.ReLU()), "he_normal")
    with pytest.raises(ValueError, match="fan_in=0 must be an int >= 1"):
        weight_variance("he_normal", 0, 3)
    with pytest.raises(ValueError, match="square weight"):
        weight_variance("scaled_identity", 3, 4)


def test_failed_init_writes_nothing():
    layer = nn.Linear(3, 4)
    before = layer.weight.detach().clone()
    with pytest.raises(ValueError):
        initialise_(layer, "scaled_identity")
    assert torch.equal(layer.weight, before)


def test_repr_names_formula_and_source():
    text = repr(get_initialiser("he_normal"))
    assert "2 gain^2 / fan_in" in text and "He et al. 2015" in text
