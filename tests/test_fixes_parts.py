"""The pieces of the fix trials, each against an oracle: plans, model edits (re-init
variances, LSUV, forget-gate bias, head removal), the class NLL yardstick, the gain spread
of a hand-made Record, candidate choice and the ranking order."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradprobe.diagnose.finding import Finding
from gradprobe.lab.fixes import edits
from gradprobe.lab.fixes.candidates import choose
from gradprobe.lab.fixes.context import Context
from gradprobe.lab.fixes.plan import Plan
from gradprobe.lab.fixes.problem import class_nll
from gradprobe.lab.fixes.ranking import Ranked, gain_spread, rank, score
from gradprobe.lab.fixes.remedies import BY_NAME, CATALOGUE
from gradprobe.lab.fixes.trials import TrialRun
from gradprobe.record.record import Record


def ctx(**kw) -> Context:
    base = dict(activation="sigmoid", depth=8, has_lstm=False, norms=frozenset(), seq_len=None,
                head=None,
                classification=True, accepts=frozenset(), findings=())  # fmt: skip
    return Context(**{**base, **kw})


def test_plan_merges_disjoint_changes_and_refuses_overlaps():
    a, b = Plan(options=(("activation", "relu"),), init=("he_normal", 1.0)), Plan(clip_norm=1.0)
    merged = a.merge(b)
    assert merged == Plan(options=(("activation", "relu"),), init=("he_normal", 1.0), clip_norm=1.0)
    assert a.merge(Plan(init=("orthogonal", 1.0))) is None
    assert Plan(lr_factor=0.1).merge(Plan(lr_factor=10.0)) is None
    assert Plan().is_baseline and not merged.is_baseline
    assert merged.describe() == "activation=relu, init he_normal (1), clip 1"
    with pytest.raises(ValueError, match="not among: activation, norm, residual_alpha"):
        Plan(options=(("width", 3),))
    with pytest.raises(ValueError, match="lr_factor=0"):
        Plan(lr_factor=0)


def test_critical_init_draws_the_theory_sigma_w2():
    critical = pytest.importorskip("gradprobe.theory.critical", reason="theory not written yet")
    plan = BY_NAME["critical_init"].plan(ctx(activation="tanh"))
    sigma_w2 = critical.critical_init("tanh", bias_var=0.0)
    assert plan.init == ("critical", sigma_w2)
    assert sigma_w2 == pytest.approx(1.0, rel=1e-6)  # tanh'(0)^2 = 1: chi_1 = sigma_w^2
    layer = nn.Sequential(nn.Linear(400, 400), nn.Tanh())
    edits.reinit_(layer, "critical", 3.0, torch.Generator().manual_seed(0), None)
    var = float(layer[0].weight.detach().var())
    # Var(W) = sigma_w^2 / fan_in; the sample variance of 160 000 draws is within 2%
    assert var == pytest.approx(3.0 / 400, rel=0.02)
    assert torch.all(layer[0].bias == 0)


def test_lsuv_brings_every_layer_output_to_unit_variance():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(),
                          nn.Linear(64, 4))  # fmt: skip
    x = 100.0 * torch.randn(256, 16)  # inputs far from unit scale
    edits.reinit_(model, "lsuv", 1.0, torch.Generator().manual_seed(0), (x, None))
    h = x.detach()
    for module in model:
        h = module(h).detach()
        if isinstance(module, nn.Linear):
            assert abs(float(h.var()) - 1.0) < edits.LSUV_TOL


def test_forget_bias_sets_the_f_block_only():
    lstm = nn.LSTM(3, 5, num_layers=2)
    before = {n: p.detach().clone() for n, p in lstm.named_parameters()}
    assert edits.set_forget_bias_(nn.Sequential(lstm), 1.0) == 1
    for name, p in lstm.named_parameters():
        if not name.startswith("bias"):
            assert torch.equal(p, before[name])
            continue
        f_block = 1.0 if name.startswith("bias_ih") else 0.0
        assert torch.all(p[5:10] == f_block)
        assert torch.equal(p[:5], before[name][:5]) and torch.equal(p[10:], before[name][10:])


def test_strip_head_makes_the_model_return_its_logits():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=1))
    x = torch.randn(5, 4)
    logits = model[0](x)
    assert edits.strip_head_(model, "1")
    assert torch.equal(model(x), logits)
    assert not edits.strip_head_(model, "0")  # a Linear is no probability head


@pytest.mark.parametrize("head", [None, "Softmax", "LogSoftmax"])
def test_class_nll_is_cross_entropy_whatever_the_head(head):
    torch.manual_seed(0)
    logits, y = torch.randn(8, 5), torch.randint(0, 5, (8,))
    out = {None: logits, "Softmax": logits.softmax(1), "LogSoftmax": logits.log_softmax(1)}
    expected = F.cross_entropy(logits, y)
    assert float(class_nll(out[head], y, head)) == pytest.approx(float(expected), rel=1e-5)
    one_hot = F.one_hot(y, 5).float()
    assert float(class_nll(out[head], one_hot, head)) == pytest.approx(float(expected), rel=1e-5)


def test_gain_spread_is_the_mean_abs_log_gain_per_unit():
    delta = np.array([[1.0, 4.0, 2.0], [1.0, 4.0, 2.0]])  # (n_steps, n_layers)
    widths = [16, 64, 4]
    infos = [{"name": f"fc{i}", "type": "Linear", "weight_shapes": [[w, 8]]}
             for i, w in enumerate(widths)]  # fmt: skip
    rec = Record(["fc0", "fc1", "fc2"], [0, 1], {"delta_norm": delta}, layer_info=infos)
    r = delta[0] / np.sqrt(widths)  # per-unit RMS, as the depth rule
    expected = (abs(math.log(r[0] / r[1])) + abs(math.log(r[1] / r[2]))) / 2
    assert gain_spread(rec) == pytest.approx(expected, rel=1e-12)
    one = Record(["fc0"], [0], {"delta_norm": np.ones((1, 1))}, layer_info=infos[:1])
    assert math.isnan(gain_spread(one))


def test_plain_models_get_automatic_candidates_and_architecture_suggestions():
    findings = (Finding("vanishing_gradient", ["a", "b"], [0], "error"),)
    cands, suggestions = choose(ctx(findings=findings), ["vanishing_gradient"])
    assert cands and all(BY_NAME[r].automatic for c in cands for r in c.remedies)
    assert {s.remedy for s in suggestions} >= {"relu_he", "batch_norm", "residual"}
    cands, suggestions = choose(ctx(accepts=frozenset({"activation", "norm"})),
                                ["vanishing_gradient"])  # fmt: skip
    names = [c.name for c in cands]
    assert "relu_he" in names and "batch_norm" in names
    assert [s.remedy for s in suggestions] == ["residual"]
    # a model that already has BatchNorm gets no batch_norm candidate
    cands, _ = choose(ctx(accepts=frozenset({"norm"}), norms=frozenset({"batch"})),
                      ["exploding_gradient"])  # fmt: skip
    assert "batch_norm" not in [c.name for c in cands]


def test_pairs_only_when_no_single_remedy_addresses_every_target():
    targets = ["lint_mse_for_classification", "saturation"]
    cands, _ = choose(ctx(head="2"), targets)
    pairs = [c for c in cands if len(c.remedies) == 2]
    assert pairs and all(set(c.addresses) == set(targets) for c in pairs)
    assert all(c.remedies[0] == "cross_entropy" for c in pairs)
    cands, _ = choose(ctx(accepts=frozenset({"activation"})), ["vanishing_gradient"])
    assert all(len(c.remedies) == 1 for c in cands)


def test_lr_to_target_scales_toward_an_update_ratio_of_1e3():
    small = Finding("update_too_small", ["a"], [0], "warning",
                    evidence={"update_ratio": {"a": 2e-7, "b": 4e-6}})  # fmt: skip
    plan = BY_NAME["lr_to_target"].plan(ctx(findings=(small,)))
    assert plan.lr_factor == pytest.approx(1e-3 / 4e-6)  # the best-fed layer reaches 1e-3
    assert BY_NAME["lr_to_target"].plan(ctx()) is None


def _ranked(name, labels, spread, loss, order):
    runs = [TrialRun(name, 0, "done", labels=labels, gain_spread=spread, loss_end=loss)]
    return Ranked(name, (name,), Plan(), runs, order=(order,))


def test_ranking_order_findings_then_regression_then_gain_then_loss_then_catalogue():
    targets = ["vanishing_gradient"]
    cands = [
        _ranked("d", ("vanishing_gradient",), 0.01, 0.1, 0),  # unresolved: last
        _ranked("c", ("dead_units",), 0.1, 0.1, 1),  # resolved but a new finding
        _ranked("b", (), 0.1, 0.5, 2),  # best gain, but its loss is above the baseline's
        _ranked("a", (), 0.2, 0.4, 4),
        _ranked("e", (), 0.2, 0.4, 3),  # ties with a: catalogue order decides
    ]
    ordered = rank([score(c, targets, set(), base_loss=0.45) for c in cands])
    assert [c.name for c in ordered] == ["e", "a", "b", "c", "d"]
    assert [c.rank for c in ordered] == [1, 2, 3, 4, 5]
    assert ordered[2].regressed and not ordered[0].regressed
    assert ordered[3].new == ("dead_units",) and ordered[4].remaining == ("vanishing_gradient",)


def test_every_remedy_names_known_kinds_and_a_source():
    from gradprobe.diagnose.finding import KINDS

    for remedy in CATALOGUE:
        assert remedy.source and remedy.snippet, remedy
        assert all(k.removesuffix("@time") in KINDS for k in remedy.kinds), remedy
