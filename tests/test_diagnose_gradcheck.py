"""gp.gradcheck: passes on correct models, fails and names the layer on a wrong backward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gradprobe as gp

K = 3


def _x(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _y(n=8, seed=1):
    return torch.randint(0, K, (n,), generator=torch.Generator().manual_seed(seed))


class ScaledLinearFn(torch.autograd.Function):
    """y = x W^T + b, whose backward returns `weight_factor` times the true weight gradient."""

    @staticmethod
    def forward(ctx, x, weight, bias, weight_factor):
        ctx.save_for_backward(x, weight)
        ctx.weight_factor = weight_factor
        return x @ weight.t() + bias

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved_tensors
        return g @ weight, ctx.weight_factor * g.t() @ x, g.sum(0), None


class CustomLinear(nn.Linear):
    def __init__(self, n_in, n_out, weight_factor):
        super().__init__(n_in, n_out)
        self.weight_factor = weight_factor

    def forward(self, x):
        return ScaledLinearFn.apply(x, self.weight, self.bias, self.weight_factor)


class ForgetfulSigmoidFn(torch.autograd.Function):
    """sigmoid whose backward forgets the factor (1 - s): s'(z) = s instead of s (1 - s)."""

    @staticmethod
    def forward(ctx, z):
        s = torch.sigmoid(z)
        ctx.save_for_backward(s)
        return s

    @staticmethod
    def backward(ctx, g):
        (s,) = ctx.saved_tensors
        return g * s


class ForgetfulSigmoid(nn.Module):
    def forward(self, z):
        return ForgetfulSigmoidFn.apply(z)


def _mlp(act: type[nn.Module], depth: int = 3) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(5, 8), act()]
    for _ in range(depth - 2):
        layers += [nn.Linear(8, 8), act()]
    return nn.Sequential(*layers, nn.Linear(8, K))


class ResidualMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(5, 8)
        self.blocks = nn.ModuleList(nn.Linear(8, 8) for _ in range(3))
        self.out = nn.Linear(8, K)

    def forward(self, x):
        h = self.inp(x)
        for fc in self.blocks:
            h = h + torch.tanh(fc(h))
        return self.out(h)


class LSTMClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(11, 4)
        self.lstm = nn.LSTM(4, 6, num_layers=2, batch_first=True)
        self.head = nn.Linear(6, K)

    def forward(self, tokens):
        out, _ = self.lstm(self.embed(tokens))  # (B, T, 6)
        return self.head(out[:, -1])


def _cnn():
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Dropout(0.3),  # train mode: one fixed mask per evaluation
        nn.Linear(4 * 3 * 3, K),
    )


CASES = {
    "sigmoid mlp": (lambda: _mlp(nn.Sigmoid, 4), lambda: _x(8, 5)),
    "tanh mlp": (lambda: _mlp(nn.Tanh, 4), lambda: _x(8, 5)),
    "relu mlp": (lambda: _mlp(nn.ReLU, 4), lambda: _x(8, 5)),
    "residual mlp": (ResidualMLP, lambda: _x(8, 5)),
    "cnn with batchnorm and dropout": (_cnn, lambda: _x(8, 1, 6, 6)),
    "lstm classifier": (LSTMClassifier, lambda: torch.randint(0, 11, (8, 5))),
}


@pytest.mark.parametrize("name", list(CASES))
def test_gradcheck_passes_on_correct_models(name):
    torch.manual_seed(0)
    make, inputs = CASES[name]
    report = gp.gradcheck(make(), (inputs(), _y()), F.cross_entropy)
    assert report.passed, str(report)
    assert all(row.n_coords >= 1 for row in report.rows)
    assert max(row.max_rel_err for row in report.rows) < 1e-6  # far inside rtol=1e-4


def test_wrong_weight_gradient_fails_that_layer_only_with_the_expected_error():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), CustomLinear(8, 8, 2.0), nn.Tanh())
    model.append(nn.Linear(8, K))
    report = gp.gradcheck(model, (_x(8, 5), _y()), F.cross_entropy)
    assert report.failed == ["2"] and report.culprit == "2"
    assert report["0"].passed and report["4"].passed
    # oracle: autograd a = 2 n, so |a - n| / max(|a|, |n|) = 1/2 on every weight coordinate
    assert report["2"].max_rel_err == pytest.approx(0.5, rel=1e-6)
    assert report["2"].worst.startswith("weight[")
    assert "FAILED at 2" in str(report) and "FAIL" in str(report).splitlines()[3]


def test_correct_custom_function_passes():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), CustomLinear(8, K, 1.0))
    assert gp.gradcheck(model, (_x(8, 5), _y()), F.cross_entropy).passed


def test_wrong_activation_backward_is_located_between_the_culprit_and_the_next_layer():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 8), ForgetfulSigmoid(), nn.Linear(8, K)
    )
    report = gp.gradcheck(model, (_x(8, 5), _y()), F.cross_entropy)
    # the layers below the wrong op get wrong gradients; the one above it does not
    assert report.failed == ["0", "2"] and report["4"].passed
    assert report.culprit == "2"
    assert "faulty backward is in 2 or between it and 4" in str(report)


def test_user_model_rng_and_dtype_untouched_and_sampling_is_seeded():
    torch.manual_seed(0)
    model = _cnn()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    batch = (_x(8, 1, 6, 6), _y())
    a = gp.gradcheck(model, batch, F.cross_entropy, max_coords_per_layer=4, seed=3)
    assert torch.equal(rng, torch.get_rng_state())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert next(model.parameters()).dtype == torch.float32 and model.training
    b = gp.gradcheck(model, batch, F.cross_entropy, max_coords_per_layer=4, seed=3)
    assert [r.worst for r in a.rows] == [r.worst for r in b.rows]
    # 4 coordinates split over weight and bias: 2 each; forward order of the layers
    assert [(r.layer, r.n_coords) for r in a.rows] == [("0", 4), ("1", 4), ("4", 4), ("8", 4)]


def test_lab_models_pass():
    models = pytest.importorskip("gradprobe.lab.models")
    from gradprobe.lab.activations import ACTIVATIONS

    g = torch.Generator().manual_seed(0)
    x, seq = _x(8, 5), _x(8, 4, 3)
    cases = [(models.mlp([5, 6, 6, K], act, generator=g), x) for act in ACTIVATIONS]
    cases += [(models.mlp([5, 6, 6, K], "tanh", norm=norm), x) for norm in ("batch", "layer")]
    cases += [(models.residual_mlp(2, 6, in_features=5, out_features=K, generator=g), x)]
    cases += [(models.residual_mlp(2, 6, in_features=5, out_features=K, norm="batch"), x)]
    cases += [(models.recurrent(kind, 3, 5, K), seq) for kind in ("rnn", "lstm", "gru")]
    for model, inputs in cases:
        report = gp.gradcheck(model, (inputs, _y()), F.cross_entropy, max_coords_per_layer=6)
        assert report.passed, f"{model}\n{report}"


def test_bad_arguments():
    model = _mlp(nn.Tanh)
    batch = (_x(8, 5), _y())
    with pytest.raises(ValueError, match="max_coords_per_layer=0"):
        gp.gradcheck(model, batch, F.cross_entropy, max_coords_per_layer=0)
    with pytest.raises(ValueError, match="eps=-1"):
        gp.gradcheck(model, batch, F.cross_entropy, eps=-1)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        gp.gradcheck("model", batch, F.cross_entropy)
    with pytest.raises(KeyError, match="no layer 'fc9'"):
        gp.gradcheck(model, batch, F.cross_entropy)["fc9"]
