"""gp.try_fixes end to end on small synthetic problems: the remedy that restores the
gradient ranks top and lowers the loss, rankings repeat exactly for the same seeds, plain
nn.Module factories get only the automatic remedies, and bad input is refused."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradprobe.diagnose.finding import Finding
from gradprobe.lab.fixes.api import try_fixes
from gradprobe.lab.fixes.remedies import BY_NAME

N_IN, N_CLASSES = 16, 4


def blobs(n: int = 512, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """x ~ N(0, I) of shape (n, 16); y the argmax of a fixed linear map, 4 classes."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, N_IN, generator=g)
    return x, (x @ torch.randn(N_IN, N_CLASSES, generator=g)).argmax(1)


DATA = blobs()


def deep_sigmoid(activation: str = "sigmoid") -> nn.Sequential:
    """8 layers of 32 with torch's default init: x0.13 per sigmoid layer (a factory that
    takes the `activation` option)."""
    acts = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU}
    layers: list[nn.Module] = []
    for n_in in [N_IN] + [32] * 7:
        layers += [nn.Linear(n_in, 32), acts[activation]()]
    return nn.Sequential(*layers, nn.Linear(32, N_CLASSES))


class Plain(nn.Module):
    """A user's model that takes no option: the deep sigmoid net behind a forward."""

    def __init__(self) -> None:
        super().__init__()
        self.body = deep_sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def softmax_net() -> nn.Sequential:
    return nn.Sequential(nn.Linear(N_IN, 32), nn.ReLU(), nn.Linear(32, N_CLASSES), nn.Softmax(1))


def mse_one_hot(probs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(probs, F.one_hot(y, probs.shape[1]).to(probs.dtype))


def sgd(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)


def test_vanishing_sigmoid_mlp_is_fixed_by_an_activation_swap_that_lowers_the_loss():
    tried = ("relu_he", "glorot_init", "orthogonal_init", "critical_init", "lr_up")
    result = try_fixes(deep_sigmoid, DATA, F.cross_entropy, steps=40, seeds=(0,), optimizer=sgd,
                       remedies=tried)  # fmt: skip
    assert "vanishing_gradient" in result.targets  # the baseline was diagnosed
    assert "vanishing_gradient" in result.baseline.remaining
    best = result.best
    assert best.remedies == ("relu_he",)
    assert "vanishing_gradient" in best.resolved
    assert best.loss_end < result.baseline.loss_end
    assert best.gain_spread < result.baseline.gain_spread
    assert math.isfinite(result.baseline.loss_start)
    assert result.settings["reference"].startswith("class NLL")
    text = repr(result)
    lines = text.splitlines()
    assert lines[2].startswith("-  baseline") and max(map(len, lines)) <= 100
    first = next(i for i, line in enumerate(lines) if not line.startswith(("-", " ", "#", "t")))
    assert lines[first].startswith(f"1  {best.name}")


def _figures(result) -> list[tuple]:
    return [
        (c.name, c.resolved, c.new, c.gain_spread, c.loss_end, [r.labels for r in c.runs])
        for c in [result.baseline, *result.ranked]
    ]


def test_same_seeds_give_the_same_ranking():
    kwargs = dict(steps=20, seeds=(0, 1), optimizer=sgd, remedies=("relu_he", "glorot_init"))
    first = try_fixes(deep_sigmoid, DATA, F.cross_entropy, ["vanishing_gradient"], **kwargs)
    second = try_fixes(deep_sigmoid, DATA, F.cross_entropy, ["vanishing_gradient"], **kwargs)
    assert [c.name for c in first.ranked] == [c.name for c in second.ranked]
    assert _figures(first) == _figures(second)  # bit for bit, not just the order
    assert [c.rank for c in first.ranked] == list(range(1, len(first.ranked) + 1))


def test_plain_module_gets_only_automatic_remedies_and_suggestions_with_code():
    result = try_fixes(lambda: Plain(), DATA, F.cross_entropy, ["vanishing_gradient"],
                       steps=30, seeds=(0,), optimizer=sgd)  # fmt: skip
    assert result.ranked, "init rescaling applies to any module"
    for cand in result.ranked:
        assert all(BY_NAME[r].automatic for r in cand.remedies), cand
        assert cand.plan.options == ()
    suggested = {s.remedy: s for s in result.suggestions}
    assert {"relu_he", "batch_norm", "residual"} <= set(suggested)
    assert suggested["relu_he"].needs == ("activation",)
    assert "kaiming_normal_" in suggested["relu_he"].snippet
    assert "kaiming_normal_" in result.table()  # printed under the table


def test_mse_for_classification_ranks_the_loss_change_top():
    result = try_fixes(softmax_net, DATA, mse_one_hot, steps=40, seeds=(0,), optimizer=sgd)
    assert "lint_mse_for_classification" in result.targets
    best = result.best
    assert "cross_entropy" in best.remedies
    assert best.plan.strip_head and best.plan.loss == "cross_entropy"
    assert "lint_mse_for_classification" in best.resolved
    assert best.loss_end < result.baseline.loss_end  # both in class NLL


def test_findings_may_be_given_as_findings_dicts_or_keys():
    finding = Finding("vanishing_gradient", ["0", "14"], [0], "error")
    for given in ([finding], [finding.to_dict()], ["vanishing_gradient"]):
        result = try_fixes(deep_sigmoid, DATA, F.cross_entropy, given, steps=2, seeds=(0,),
                           optimizer=sgd, remedies=["relu_he"])  # fmt: skip
        assert result.targets == ("vanishing_gradient",)
        assert [c.name for c in result.ranked] == ["relu_he"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"findings": ["vanishing_gradients"]}, "is not one of"),
        ({"findings": [{"kind": "bogus", "severity": "error"}]}, "kind='bogus' is not one of"),
        ({"steps": 0}, "steps=0 is not valid"),
        ({"steps": -3}, "steps=-3 is not valid"),
        ({"seeds": ()}, "need at least one seed"),
        ({"seeds": [0, 0]}, "distinct"),
        ({"seeds": [-1]}, "ints >= 0"),
        ({"remedies": ["relu_hee"]}, "not among"),
        ({"budget_s": 0}, "budget_s=0 is not valid"),
        ({"jobs": 0}, "jobs=0 is not valid"),
    ],
)
def test_bad_input_is_refused_with_the_value_and_what_is_allowed(kwargs, message):
    kwargs = {"findings": ["vanishing_gradient"], "steps": 5, "seeds": (0,), **kwargs}
    with pytest.raises(ValueError, match=message):
        try_fixes(deep_sigmoid, DATA, F.cross_entropy, **kwargs)


def test_bad_data_and_factory_types_are_refused():
    with pytest.raises(TypeError, match="data must have .batch"):
        try_fixes(deep_sigmoid, [1, 2, 3], F.cross_entropy, ["vanishing_gradient"])
    with pytest.raises(TypeError, match="build_model must be callable"):
        try_fixes("deep_sigmoid", DATA, F.cross_entropy, ["vanishing_gradient"])
    with pytest.raises(TypeError, match="a finding must be"):
        try_fixes(deep_sigmoid, DATA, F.cross_entropy, [3])
