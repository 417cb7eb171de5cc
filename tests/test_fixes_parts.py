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


def test_rnn_isometry_keeps_w_hh_orthogonal_and_tanh_in_its_linear_range():
    torch.manual_seed(0)
    rnn = nn.RNN(8, 32, batch_first=True)
    model = nn.Sequential(rnn)
    x = 5.0 * torch.randn(64, 40, 8)  # large inputs: torch's init saturates tanh
    edits.reinit_(model, "rnn_isometry", 1.0, torch.Generator().manual_seed(0), (x, None))
    w_hh = rnn.weight_hh_l0.detach()
    assert torch.allclose(w_hh @ w_hh.T, torch.eye(32), atol=1e-5)  # every singular value 1
    h = rnn(x)[0].detach()
    assert abs(float(h.var()) * 40 - 1.0) < edits.LSUV_TOL  # Var(h) = 1/T
    assert torch.all(rnn.bias_ih_l0 == 0) and torch.all(rnn.bias_hh_l0 == 0)
    relu_rnn = nn.RNN(8, 16, nonlinearity="relu")
    assert not edits.has_tanh_rnn(nn.Sequential(relu_rnn)) and edits.has_tanh_rnn(model)


def test_time_findings_get_the_recurrent_remedies():
    lstm_ctx = ctx(activation=None, has_lstm=True, seq_len=40)
    cands, _ = choose(lstm_ctx, ["vanishing_gradient@time"])
    plans = {c.name: c.plan for c in cands}
    assert {"forget_bias", "chrono_init", "forget_bias_horizon"} <= set(plans)
    assert "rnn_isometry" not in plans  # no tanh nn.RNN in this model
    assert plans["chrono_init"].forget_bias == ("chrono", 40.0)  # T_max: the task's horizon
    kind, b = plans["forget_bias_horizon"].forget_bias
    # sigma(b) forgets with time scale 1 / (1 - sigma(b)) steps: the sequence's T = 40
    assert kind == "constant" and 1 / (1 - 1 / (1 + math.exp(-b))) == pytest.approx(40.0)
    rnn_ctx = ctx(activation="tanh", has_tanh_rnn=True, seq_len=40)
    for target in ("vanishing_gradient@time", "exploding_gradient@time"):
        names = [c.name for c in choose(rnn_ctx, [target])[0]]
        assert "rnn_isometry" in names and "forget_bias_horizon" not in names
    assert BY_NAME["rnn_isometry"].plan(rnn_ctx).init == ("rnn_isometry", 1.0)


def test_wrap_breaks_after_separators_and_keeps_every_character():
    from gradprobe.lab.fixes.layout import wrap

    text = "lint_mse_for_classification, saturation"
    lines = wrap(text, 15)
    assert lines == ["lint_mse_for_", "classification,", "saturation"]
    assert "".join(wrap("abcdefghij", 4)) == "abcdefghij"  # no separator: split inside
    assert wrap("short", 80) == ["short"]
    with pytest.raises(ValueError, match="width=0"):
        wrap("x", 0)


def _long_result():
    from gradprobe.lab.fixes.result import FixResult

    targets = ("lint_mse_for_classification", "saturation")

    def cand(name, rank_, plan, resolved, new, loss, error=None):
        runs = [TrialRun(name, 0, "failed" if error else "done", error=error)]
        left = tuple(t for t in targets if t not in resolved)
        return Ranked(name, tuple(name.split("+")), plan, runs, resolved, left, new,
                      loss > 2.78, 0.05, 2.7, loss, rank=rank_)  # fmt: skip

    big = Plan(options=(("activation", "relu"),), init=("he_normal", 1.0), strip_head=True,
               lr_factor=0.1, loss="cross_entropy")  # fmt: skip
    ranked = [
        cand("cross_entropy+relu_he+lr_down", 1, big, targets, (), 0.0735),
        cand("lr_down", 2, Plan(lr_factor=0.1), (), ("dead_units", "loss_plateau"), 2.9,
             error="RuntimeError: the factory rejected the option activation='relu'"),
    ]  # fmt: skip
    base = cand("baseline", 0, Plan(), (), (), 2.78)
    return FixResult(targets, base, ranked, [], {"steps": 100, "seeds": [0, 1]}, [])


def _read_table(lines: list[str]) -> list[tuple[str, ...]]:
    """Rows back from the fitted table, spaces dropped (a wrap drops the space it breaks
    at): cells cut at the header's column starts, wrapped pieces joined, the changes
    line put back in as the third cell."""
    header = lines[0]
    names = ["#", "remedy", "resolved", "left", "new", "spread", "loss"]
    starts = [header.index(n) for n in names]
    bounds = list(zip(starts, [*starts[1:], None]))
    rows: list[list[str]] = []
    for line in lines[1:]:
        if line.startswith("   changes: "):
            rows[-1][2] = line[len("   changes: ") :]
            continue
        if line.startswith("   ") and rows and rows[-1][2]:  # the changes, wrapped
            rows[-1][2] += line
            continue
        pieces = [line[a:b].strip() for a, b in bounds]
        if pieces[0]:
            rows.append([pieces[0], pieces[1], "", *pieces[2:]])
            continue
        for k, piece in enumerate(pieces[1:], start=1):
            cell = k if k == 1 else k + 1
            rows[-1][cell] += piece
    return [tuple(c.replace(" ", "") for c in r) for r in rows]


@pytest.mark.parametrize("width", [80, 100])
def test_table_fits_the_width_and_keeps_every_cell(width):
    result = _long_result()
    lines = result.table(width).splitlines()
    assert max(map(len, lines)) <= width
    table = lines[lines.index(next(x for x in lines if x.startswith("#  "))) :]
    expected = [
        tuple(c.replace(" ", "") for c in (r[0], r[1], "" if r[2] == "unchanged" else r[2], *r[3:]))
        for r in result.rows()
    ]
    assert _read_table(table) == expected  # every cell is there, in its column
    with pytest.raises(ValueError, match="width=20"):
        result.table(20)
