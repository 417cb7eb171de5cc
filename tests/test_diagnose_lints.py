"""Lints on the autograd graph: each fires on its mistake and never on the healthy setups."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradprobe.diagnose.graph import Graph, forward, op_name, split_batch
from gradprobe.diagnose.lints import classification_target, lint

K = 4  # classes


def _batch(target: str = "labels", n: int = 16):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 6, generator=g)
    labels = torch.randint(0, K, (n,), generator=g)
    targets = {
        "labels": labels,
        "onehot": F.one_hot(labels, K).float(),
        "regression": torch.rand(n, K, generator=g),
    }
    return x, targets[target]


def _net(*tail: nn.Module) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, K), *tail)


class FunctionalSoftmax(nn.Module):
    """Softmax applied inside forward (no module to see), reshaped on the way."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, K)

    def forward(self, x):
        return F.softmax(self.fc(x).reshape(-1, 2, K // 2), dim=-1).reshape(-1, K)


def _kinds(findings):
    return [f.kind for f in findings]


def test_cross_entropy_is_nll_loss_over_log_softmax_in_torch_graph():
    loss = F.cross_entropy(_net()(_batch()[0]), _batch()[1])
    assert op_name(loss.grad_fn) == "NllLoss"
    assert [op_name(n) for n in Graph(loss).nodes[:2]] == ["NllLoss", "LogSoftmax"]


def test_graph_walk_is_iterative_on_a_very_deep_graph():
    x = torch.randn(3, requires_grad=True)
    h = x
    for _ in range(5000):  # far beyond Python's recursion limit
        h = h * 1.0001 + h
    graph = Graph(h.sum())
    # Sum, then per iteration Add and Mul, then the leaf's AccumulateGrad
    assert len(graph) == 1 + 2 * 5000 + 1
    assert graph.root.name() == "SumBackward0"


# -- lint_double_softmax --------------------------------------------------------------
def test_softmax_module_before_cross_entropy_is_flagged_with_its_loss_floor():
    (f,) = lint(_net(nn.Softmax(dim=-1)), _batch(), nn.CrossEntropyLoss())
    assert f.kind == "lint_double_softmax" and f.severity == "warning"
    assert f.layers == ("3",)
    assert f.evidence["inner_op"] == "SoftmaxBackward0"
    assert f.evidence["loss_op"] == "NllLossBackward0"
    floor = math.log(1 + (K - 1) / math.e)
    assert f.evidence["loss_floor"] == pytest.approx(floor)
    # oracle: cross-entropy of a perfect one-hot probability vector is that floor
    perfect = F.one_hot(torch.arange(K), K).float()
    assert float(F.cross_entropy(perfect, torch.arange(K))) == pytest.approx(floor, rel=1e-6)


def test_functional_softmax_through_views_before_cross_entropy_is_flagged():
    (f,) = lint(FunctionalSoftmax(), _batch(), F.cross_entropy)
    assert f.kind == "lint_double_softmax" and f.layers == ()


def test_log_softmax_module_before_cross_entropy_is_flagged_as_redundant_info():
    (f,) = lint(_net(nn.LogSoftmax(dim=-1)), _batch(), nn.CrossEntropyLoss())
    assert (f.kind, f.severity) == ("lint_double_softmax", "info")
    assert f.evidence["inner_op"] == "LogSoftmaxBackward0"


# -- lint_unstable_log_softmax --------------------------------------------------------
@pytest.mark.parametrize(
    ("tail", "loss_fn", "op"),
    [
        (nn.Softmax(dim=-1), lambda o, y: F.nll_loss(torch.log(o), y), "Softmax"),
        (nn.Softmax(dim=-1), lambda o, y: F.nll_loss(o.t().log().t(), y), "Softmax"),
        (nn.Sigmoid(), lambda o, y: -(y * torch.log(o)).mean(), "Sigmoid"),
    ],
)
def test_log_of_softmax_or_sigmoid_is_flagged(tail, loss_fn, op):
    target = "labels" if op == "Softmax" else "onehot"
    (f,) = lint(_net(tail), _batch(target), loss_fn)
    assert (f.kind, f.severity) == ("lint_unstable_log_softmax", "warning")
    assert f.evidence["ops"] == [f"Log over {op}"]


def test_underflowing_log_softmax_is_an_error_and_its_gradient_is_nan():
    model = _net(nn.Softmax(dim=-1))
    with torch.no_grad():
        model[2].weight.mul_(500.0)  # logit gaps of hundreds: softmax underflows to 0

    def loss_fn(o, y):
        return F.nll_loss(torch.log(o), y)

    (f,) = lint(model, _batch(), loss_fn)
    assert f.severity == "error"
    # oracle: the loss is inf and backward gives NaN, as the cause says
    loss = loss_fn(model(_batch()[0]), _batch()[1])
    loss.backward()
    assert math.isinf(loss.item()) and torch.isnan(model[2].weight.grad).any()


# -- lint_mse_for_classification ------------------------------------------------------
@pytest.mark.parametrize(
    ("tail", "target", "loss_fn"),
    [
        (nn.Sigmoid(), "onehot", nn.MSELoss()),
        (nn.Softmax(dim=-1), "labels", lambda o, y: F.mse_loss(o, F.one_hot(y, K).float())),
        (nn.Softmax(dim=-1), "labels", lambda o, y: ((o - F.one_hot(y, K)) ** 2).sum(1).mean()),
        (nn.Sigmoid(), "onehot", lambda o, y: ((y - o) * (y - o)).mean()),
        (nn.Sigmoid(), "onehot", lambda o, y: 0.5 * (o - y).square().sum()),
    ],
)
def test_quadratic_loss_on_class_targets_over_squashed_output_is_flagged(tail, target, loss_fn):
    model, batch = _net(tail), _batch(target)
    (f,) = lint(model, batch, loss_fn)
    assert (f.kind, f.severity, f.layers) == ("lint_mse_for_classification", "warning", ("3",))
    a = model(batch[0]).detach().double()
    assert f.evidence["mean_output_derivative"] == pytest.approx(float((a * (1 - a)).mean()))


# -- no false positives ---------------------------------------------------------------
class Attention(nn.Module):
    """An explicit softmax inside the model (attention weights), then logits: nothing to flag."""

    def __init__(self) -> None:
        super().__init__()
        self.qk = nn.Linear(6, 12)
        self.head = nn.Linear(6, K)

    def forward(self, x):
        tokens = torch.stack([x, x.flip(-1), x.roll(1, -1)], 1)  # (B, T, 6)
        q, k = self.qk(tokens).chunk(2, -1)
        weights = torch.softmax(q @ k.transpose(1, 2) / 6**0.5, dim=-1)  # (B, T, T)
        return self.head((weights @ tokens).mean(1))  # (B, K)


HEALTHY = {
    "linear + CrossEntropyLoss": (_net(), "labels", nn.CrossEntropyLoss()),
    "label smoothing": (_net(), "labels", nn.CrossEntropyLoss(label_smoothing=0.1)),
    "log_softmax + nll_loss": (_net(nn.LogSoftmax(-1)), "labels", F.nll_loss),
    "sigmoid + BCELoss": (_net(nn.Sigmoid()), "onehot", nn.BCELoss()),
    "BCEWithLogits": (_net(), "onehot", nn.BCEWithLogitsLoss()),
    "sigmoid + MSE on regression": (_net(nn.Sigmoid()), "regression", nn.MSELoss()),
    "linear + MSE on one-hot": (_net(), "onehot", nn.MSELoss()),
    "clamped log softmax": (
        _net(nn.Softmax(-1)),
        "labels",
        lambda o, y: F.nll_loss(torch.log(o.clamp_min(1e-12)), y),
    ),
    "attention softmax + CE": (Attention(), "labels", nn.CrossEntropyLoss()),
}


@pytest.mark.parametrize("name", sorted(HEALTHY))
def test_healthy_setups_get_no_lint(name):
    model, target, loss_fn = HEALTHY[name]
    assert lint(model, _batch(target), loss_fn) == []


# -- inputs ---------------------------------------------------------------------------
def test_the_attention_model_has_a_softmax_in_its_graph():
    fp = forward(Attention(), _batch(), nn.CrossEntropyLoss())
    assert "Softmax" in {op_name(node) for node in Graph(fp.loss).nodes}


def test_classification_target_kinds():
    assert classification_target(torch.tensor([0, 2, 1])) == "integer class labels"
    assert classification_target(torch.tensor([True, False])) == "binary labels"
    assert classification_target(torch.eye(3)) == "one-hot targets"
    assert classification_target(torch.tensor([[1.0, 1.0], [0.0, 1.0]])) == "binary labels"
    assert classification_target(torch.tensor([0.5, 1.0])) is None
    assert classification_target(None) is None


def test_lint_leaves_batchnorm_statistics_and_rng_untouched():
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, K))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    lint(model, _batch(), nn.CrossEntropyLoss())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(rng, torch.get_rng_state())


def test_forward_names_the_module_that_produced_the_output():
    fp = forward(_net(nn.Softmax(-1)), _batch(), nn.CrossEntropyLoss())
    assert (fp.output_module, fp.output_module_type) == ("3", "Softmax")


def test_batch_forms_and_bad_input():
    x, y = _batch()
    assert split_batch({"x": x, "y": y})[0][0] is x
    args, kwargs, target = split_batch({"input_ids": x, "labels": y})
    assert (args, list(kwargs), target is y) == ((), ["input_ids"], True)
    assert split_batch(((x, x), y))[0] == (x, x)
    with pytest.raises(ValueError, match="sequence of 3"):
        split_batch((x, y, y))
    with pytest.raises(ValueError, match="exactly one target key"):
        split_batch({"x": x})
    with pytest.raises(ValueError, match="scalar tensor"):
        lint(_net(), (x, y), lambda o, t: F.cross_entropy(o, t, reduction="none"))
    with pytest.raises(TypeError, match="torch.nn.Module"):
        lint(lambda v: v, (x, y), F.cross_entropy)
