"""Models: shapes, layer names, placement of norms and activations, forward passes equal to a
hand computation, seeded weights, clear errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradprobe.lab.models import depth_to_sizes, mlp, recurrent, residual_mlp


def _seed(s: int) -> torch.Generator:
    return torch.Generator().manual_seed(s)


def _names(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_children()]


def test_mlp_shapes_and_names():
    model = mlp([10, 20, 30, 5])
    assert _names(model) == ["fc1", "act1", "fc2", "act2", "fc3"]
    assert [m.out_features for m in model if isinstance(m, nn.Linear)] == [20, 30, 5]
    assert model(torch.randn(7, 10)).shape == (7, 5)
    assert all(isinstance(getattr(model, n), nn.Sigmoid) for n in ("act1", "act2"))


def test_mlp_no_hidden_layer_is_a_linear_model():
    model = mlp([4, 3])
    assert _names(model) == ["fc1"]


def test_mlp_forward_equals_hand_computation():
    model = mlp([3, 4, 2], "tanh", "glorot_normal", generator=_seed(0))
    x = torch.randn(5, 3)
    w1, b1, w2, b2 = (p.detach() for p in model.parameters())
    hand = torch.tanh(x @ w1.T + b1) @ w2.T + b2
    torch.testing.assert_close(model(x), hand)


def test_per_layer_override_and_output_activation():
    acts = ["relu", "tanh", "leaky_relu"]
    model = mlp(
        [4, 8, 8, 8, 1],
        activations=acts,
        output_activation="sigmoid",
        activation_params={"slope": 0.2},
    )
    assert _names(model) == ["fc1", "act1", "fc2", "act2", "fc3", "act3", "fc4", "out_act"]
    assert isinstance(model.act1, nn.ReLU) and isinstance(model.act2, nn.Tanh)
    assert model.act3.negative_slope == 0.2
    assert isinstance(model.out_act, nn.Sigmoid)
    out = model(torch.randn(6, 4))
    assert out.shape == (6, 1) and bool(((out > 0) & (out < 1)).all())
    assert "out_act" not in _names(mlp([4, 8, 1], output_activation="none"))


@pytest.mark.parametrize(("norm", "cls"), [("batch", nn.BatchNorm1d), ("layer", nn.LayerNorm)])
def test_norm_sits_on_pre_activations(norm, cls):
    model = mlp([4, 6, 6, 2], "relu", "he_normal", norm=norm)
    assert _names(model) == ["fc1", "norm1", "act1", "fc2", "norm2", "act2", "fc3"]
    assert isinstance(model.norm1, cls) and isinstance(model.norm2, cls)
    x = torch.randn(16, 4)
    hand = torch.relu(model.norm1(model.fc1(x)))  # norm between fc and act
    torch.testing.assert_close(model[:3](x), hand)


def test_init_and_bias_reach_every_layer():
    chain = mlp([1, 1, 1], "linear", "scaled_identity", init_params={"g": 0.8})
    assert [m.weight.item() for m in chain if isinstance(m, nn.Linear)] == pytest.approx([0.8] * 2)
    assert chain(torch.tensor([[2.0]])).item() == pytest.approx(2.0 * 0.8 * 0.8)
    model = mlp([50, 400, 400, 3], init="he_normal", gain=0.5, bias_init=0.1, generator=_seed(1))
    var = float(model.fc2.weight.detach().var())
    assert var == pytest.approx(0.5**2 * 2 / 400, rel=0.02)  # SE 0.35%: well inside
    assert torch.equal(model.fc3.bias, torch.full((3,), 0.1))


def test_same_seed_same_weights():
    builders = [
        lambda g: mlp([5, 7, 3], generator=g),
        lambda g: residual_mlp(3, 8, in_features=5, out_features=2, generator=g),
        lambda g: recurrent("lstm", 3, 6, 2, init="glorot_uniform", generator=g),
    ]
    for build in builders:
        a, b, c = build(_seed(11)), build(_seed(11)), build(_seed(12))
        assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
        assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


def test_residual_names_and_forward_equal_hand_computation():
    model = residual_mlp(2, 3, in_features=4, out_features=2, alpha=0.5, generator=_seed(0))
    names = {n for n, _ in model.named_modules()}
    assert {"inp", "blocks.0.fc", "blocks.1.fc", "blocks.0.act", "out"} <= names
    x = torch.randn(5, 4)
    p = {n: t.detach() for n, t in model.named_parameters()}
    h = x @ p["inp.weight"].T + p["inp.bias"]
    for i in range(2):
        h = h + 0.5 * torch.relu(h @ p[f"blocks.{i}.fc.weight"].T + p[f"blocks.{i}.fc.bias"])
    hand = h @ p["out.weight"].T + p["out.bias"]
    torch.testing.assert_close(model(x), hand)
    assert "alpha=0.5" in repr(model)


def test_residual_norm_and_init():
    model = residual_mlp(2, 300, in_features=3, out_features=1, norm="layer", generator=_seed(2))
    assert isinstance(model.blocks[0].norm, nn.LayerNorm)
    assert float(model.blocks[1].fc.weight.detach().var()) == pytest.approx(2 / 300, rel=0.05)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_recurrent_shapes_and_last_step_head(kind):
    model = recurrent(kind, 3, 6, 4, num_layers=2)
    assert isinstance(model.rnn, {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[kind])
    assert model.rnn.batch_first and model.rnn.num_layers == 2
    x = torch.randn(5, 9, 3)  # (B, T, F)
    out = model(x)
    assert out.shape == (5, 4)
    seq, _ = model.rnn(x)
    torch.testing.assert_close(out, model.head(seq[:, -1]))


def test_recurrent_relu_init_and_default():
    assert recurrent("rnn", 2, 4, 1, nonlinearity="relu").rnn.nonlinearity == "relu"
    torch.manual_seed(0)
    default = recurrent("gru", 3, 5, 2)
    torch.manual_seed(0)
    plain = nn.GRU(3, 5, batch_first=True)
    assert torch.equal(default.rnn.weight_hh_l0, plain.weight_hh_l0)  # init=None: torch's own
    irnn = recurrent("rnn", 4, 4, 1, nonlinearity="relu", init="scaled_identity")
    assert torch.equal(irnn.rnn.weight_hh_l0, torch.eye(4))
    assert irnn.head.weight.abs().max() <= 0.5  # torch's U(+-1/sqrt(4)), not an identity
    head = recurrent("gru", 3, 5, 2, init="orthogonal", head_init="lecun_normal").head
    assert torch.equal(head.bias, torch.zeros(2))  # lecun's zero bias, not torch's


def test_depth_to_sizes():
    assert depth_to_sizes(784, 3, 30, 10) == [784, 30, 30, 30, 10]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: mlp([]), r"sizes=\[\] needs at least \[n_in, n_out\]"),
        (lambda: mlp([5]), "needs at least"),
        (lambda: mlp([5, -3, 2]), r"sizes\[1\]=-3 must be an int >= 1"),
        (lambda: mlp([5, 3, 2], "sigmod"), "activation='sigmod' is not one of: sigmoid, tanh"),
        (lambda: mlp([5, 3, 2], init="xavier"), "init='xavier' is not one of: nielsen"),
        (lambda: mlp([5, 3, 2], norm="group"), "norm='group' is not one of: none, batch, layer"),
        (lambda: mlp([5, 3, 3, 2], activations=["relu"]), "activations has 1 entries; need one"),
        (lambda: mlp([5, 3, 2], "relu", activation_params={"slop": 1}), "slop apply to none"),
        (lambda: mlp([5, 3, 2], output_activation="soft"), "activation='soft' is not one of"),
        (lambda: depth_to_sizes(5, 0, 3, 2), "depth=0 must be an int >= 1"),
        (lambda: depth_to_sizes(5, 2, -4, 2), "width=-4 must be an int >= 1"),
        (lambda: residual_mlp(0, 3, in_features=2, out_features=1), "depth=0"),
        (lambda: residual_mlp(2, 3, in_features=2, out_features=1, activation="x"), "not one of"),
        (lambda: recurrent("transformer", 2, 3, 1), "kind='transformer' is not one of: rnn"),
        (lambda: recurrent("lstm", 2, 3, 1, nonlinearity="relu"), "allowed: tanh"),
        (lambda: recurrent("rnn", 2, 3, 1, nonlinearity="sigmoid"), "allowed: tanh, relu"),
        (lambda: recurrent("gru", 2, 0, 1), "hidden_size=0 must be an int >= 1"),
        (lambda: recurrent("gru", 2, 3, 1, gain=2.0), "need an init; init is None"),
    ],
)
def test_bad_arguments_raise_clear_errors(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_recurrent_rejects_unbatched_input():
    with pytest.raises(ValueError, match=r"expected input of shape \(B, T, F\), got \(9, 3\)"):
        recurrent("rnn", 3, 4, 1)(torch.randn(9, 3))
