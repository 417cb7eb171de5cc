"""gp.check: leaves everything bit for bit as it was, and its numbers equal torch autograd."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gradprobe as gp
from gradprobe.diagnose.check import TABLE_COLUMNS, CheckReport
from tests.oracle import OutputCatcher, train_step_with_oracle

K = 4


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(6, 16),
        nn.BatchNorm1d(16),
        nn.Tanh(),
        nn.Dropout(0.3),
        nn.Linear(16, 16),
        nn.ReLU(),
        nn.Linear(16, K),
    )


def _batch(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(12, 6, generator=g), torch.randint(0, K, (12,), generator=g)


def _trained():
    """A model mid-training: Adam has stepped, .grad holds a later batch's gradient, one
    grad is None, one parameter is frozen and one submodule is in eval mode."""
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for seed in (2, 3):
        opt.zero_grad()
        x, y = _batch(seed)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    x, y = _batch(4)
    F.cross_entropy(model(x), y).backward()
    model[4].bias.grad = None
    model[6].bias.requires_grad_(False)
    model[2].eval()
    return model, opt


def _snapshot(model: nn.Module, opt: torch.optim.Optimizer) -> dict:
    params = list(model.parameters())
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "grads": [None if p.grad is None else p.grad.clone() for p in params],
        "grad_objects": [p.grad for p in params],
        "requires_grad": [p.requires_grad for p in params],
        "versions": [t._version for t in [*params, *model.buffers()]],
        "training": [m.training for m in model.modules()],
        "optimizer": copy.deepcopy(opt.state_dict()),
        "rng": torch.get_rng_state(),
    }


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


def _differences(before: dict, after: dict) -> list[str]:
    diff = [k for k in before if k != "grad_objects" and not _equal(before[k], after[k])]
    if any(x is not y for x, y in zip(before["grad_objects"], after["grad_objects"])):
        diff.append("grad_objects")
    return diff


@pytest.mark.parametrize("with_optimizer", [False, True])
def test_check_leaves_everything_bit_identical(with_optimizer):
    model, opt = _trained()
    before = _snapshot(model, opt)
    report = gp.check(model, _batch(), F.cross_entropy, optimizer=opt if with_optimizer else None)
    assert _differences(before, _snapshot(model, opt)) == []
    assert isinstance(report, CheckReport) and report.record.layers == ["0", "1", "4", "6"]


def test_the_comparison_sees_what_a_plain_step_changes():
    """The snapshot comparison can fail: a forward/backward/step changes all it checks."""
    model, opt = _trained()
    before = _snapshot(model, opt)
    x, y = _batch()
    F.cross_entropy(model(x), y).backward()  # BatchNorm statistics, dropout RNG, .grad
    opt.step()
    changed = set(_differences(before, _snapshot(model, opt)))
    assert {"state", "grads", "optimizer", "rng"} <= changed


def test_a_graph_built_before_check_can_still_be_backpropagated():
    model, opt = _trained()
    x, y = _batch()
    loss = F.cross_entropy(model(x), y)
    gp.check(model, (x, y), F.cross_entropy, optimizer=opt)
    loss.backward()  # raises if a tensor the graph saved changed its version counter


def _activation_oracle(acts: dict[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    """act_mean, act_std (population), saturated_frac (tanh), dead_frac (ReLU), directly."""
    out: dict[str, dict[str, float]] = {}
    kinds = {"0": None, "1": "tanh", "4": "relu", "6": None}
    for name, a in acts.items():
        a = a.detach().double()
        row = {"act_mean": float(a.mean()), "act_std": float(a.std(unbiased=False))}
        # the probe's tanh tail |a| > 0.97 (gradprobe/stats); ReLU units dead on the batch
        row["saturated_frac"] = float((a.abs() > 0.97).double().mean()) if kinds[name] else math.nan
        row["dead_frac"] = float((a.amax(0) <= 0).double().mean()) if kinds[name] else math.nan
        if kinds[name] == "tanh":
            row["dead_frac"] = math.nan
        if kinds[name] == "relu":
            row["saturated_frac"] = math.nan
        out[name] = row
    return out


@pytest.mark.parametrize("with_optimizer", [False, True])
def test_check_numbers_equal_autograd_oracle(with_optimizer):
    model, opt = _trained()
    batch = _batch()
    report = gp.check(model, batch, F.cross_entropy, optimizer=opt if with_optimizer else None)
    # check restored the RNG and BatchNorm statistics: the oracle sees the same pass
    twin, twin_opt = copy.deepcopy((model, opt))
    if not with_optimizer:
        twin_opt = torch.optim.SGD([p for p in twin.parameters() if p.requires_grad], lr=0.0)
    acts: dict[str, torch.Tensor] = {}
    for name, i in (("0", 0), ("1", 2), ("4", 5), ("6", 6)):  # a^l: the activation module's output
        twin[i].register_forward_hook(lambda m, a, out, name=name: acts.__setitem__(name, out))
    expected, loss = train_step_with_oracle(
        twin, twin_opt, OutputCatcher(twin), batch, F.cross_entropy
    )
    expected.update({q: {} for q in TABLE_COLUMNS[3:]})
    for name, row in _activation_oracle(acts).items():
        for q, v in row.items():
            expected[q][name] = v
    rec = report.record
    names = rec.layers
    quantities = ["grad_norm", "bias_grad_norm", "weight_norm", "grad_abs_max", *TABLE_COLUMNS[3:]]
    quantities += ["update_ratio", "update_norm"] if with_optimizer else []
    for q in quantities:
        want = [expected[q][n] for n in names]
        np.testing.assert_allclose(rec[q][0], want, rtol=1e-5, atol=1e-7, err_msg=q)
    # delta of the Linear feeding BatchNorm cancels to ~0: compare on its own scale
    atol = [1e-6 * expected["_delta_scale"][n] for n in names]
    delta_want = [expected["delta_norm"][n] for n in names]
    assert (
        np.abs(rec["delta_norm"][0] - delta_want) <= np.maximum(atol, 1e-5 * np.array(delta_want))
    ).all()
    assert report.loss == pytest.approx(loss, rel=1e-6)
    table = report.table()
    assert [r["layer"] for r in table] == names
    assert table[2]["grad_norm"] == pytest.approx(expected["grad_norm"]["4"], rel=1e-5)


def test_check_runs_the_lints_and_prints_table_and_findings():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, K), nn.Softmax(dim=-1))
    report = gp.check(model, _batch(), nn.CrossEntropyLoss())
    kinds = [f.kind for f in report.findings]
    assert "lint_double_softmax" in kinds
    assert not report.healthy
    text = str(report)
    assert text.splitlines()[1].split()[:4] == ["layer", "type", "delta_norm", "grad_norm"]
    assert "lint_double_softmax at 3" in text
    assert repr(report).startswith(f"CheckReport(loss={report.loss:.4g}, 2 layers")
    assert [
        f.kind for f in gp.check(model, _batch(), nn.CrossEntropyLoss(), lints=False).findings
    ].count("lint_double_softmax") == 0


def test_check_measures_this_batch_alone_and_under_no_grad():
    """Existing .grad is not added to; a caller's torch.no_grad() does not stop the pass."""
    model, _ = _trained()
    with torch.no_grad():
        a = gp.check(model, _batch(), F.cross_entropy).table()
    model.zero_grad(set_to_none=True)
    b = gp.check(model, _batch(), F.cross_entropy).table()
    values = [[[r[q] for q in TABLE_COLUMNS] for r in t] for t in (a, b)]
    np.testing.assert_array_equal(*values)  # NaN (not measured) in the same places


def test_check_bad_arguments():
    model, _ = _trained()
    with pytest.raises(TypeError, match="torch.nn.Module"):
        gp.check(lambda x: x, _batch(), F.cross_entropy)
    with pytest.raises(TypeError, match="optimizer"):
        gp.check(model, _batch(), F.cross_entropy, optimizer="adam")
    with pytest.raises(ValueError, match="scalar"):
        gp.check(model, _batch(), lambda o, y: o)
    with pytest.raises(ValueError, match="sigmod"):
        gp.check(model, _batch(), F.cross_entropy, unknown="sigmod")
