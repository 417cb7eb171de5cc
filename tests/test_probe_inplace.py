"""In-place ops after a layer: the probe measures dC/dz and the activation exactly, or says
it cannot and records NaN, never a wrong number."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gradprobe as gp

STEPS = 3


def relu_mlp(inplace: bool, bias: bool = True) -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 10, bias=bias), nn.ReLU(inplace=inplace), nn.Linear(10, 3))
    with torch.no_grad():
        # three units that are dead for every input: dead_frac is 3/10, not a trivial 0
        model[0].weight[:3].abs_()
        model[0].weight[:3] *= -1
        if bias:
            model[0].bias[:3] = -1.0
    return model


def batch(i: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(10 + i)
    return torch.randn(24, 5, generator=g).abs(), torch.randn(24, 3, generator=g)


def train_probed(model: nn.Module, **watch_kwargs):
    """Train STEPS steps under a probe; every step a detail step (dead_frac at each)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gp.watch(model, opt, detail_every=1, **watch_kwargs) as probe:
        for i in range(STEPS):
            x, y = batch(i)
            opt.zero_grad()
            ((model(x) - y) ** 2).mean().backward()
            opt.step()
    return probe.record()


def oracle_relu_mlp(model: nn.Sequential) -> dict[str, np.ndarray]:
    """Per step and layer: ||sum_batch dC/dz||, ||dC/dW||, activation mean, dead fraction,
    by retain_grad on an out-of-place model (weights as given, trained with the same SGD)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    out = {k: np.zeros((STEPS, 2)) for k in ("delta", "grad", "act_mean", "act_std")}
    out["dead"] = np.zeros(STEPS)
    for i in range(STEPS):
        x, y = batch(i)
        opt.zero_grad()
        z1 = model[0](x)
        z1.retain_grad()
        a1 = F.relu(z1)
        z2 = model[2](a1)
        z2.retain_grad()
        ((z2 - y) ** 2).mean().backward()
        for j, (z, a, lin) in enumerate(((z1, a1, model[0]), (z2, z2, model[2]))):
            out["delta"][i, j] = z.grad.double().sum(0).norm().item()
            out["grad"][i, j] = lin.weight.grad.double().norm().item()
            out["act_mean"][i, j] = a.double().mean().item()
            out["act_std"][i, j] = a.double().std(unbiased=False).item()
        out["dead"][i] = (a1.amax(0) <= 0).double().mean().item()
        opt.step()
    return out


@pytest.fixture(scope="module")
def twin_records():
    return train_probed(relu_mlp(inplace=True)), train_probed(relu_mlp(inplace=False))


def test_inplace_relu_matches_out_of_place_twin(twin_records):
    inplace, plain = twin_records
    assert inplace.layers == plain.layers == ["0", "2"]
    for q in ("delta_norm", "grad_norm", "bias_grad_norm", "act_mean", "act_std", "dead_frac"):
        np.testing.assert_allclose(inplace[q], plain[q], rtol=1e-6, err_msg=q)
    assert (inplace["dead_frac"][:, 0] >= 0.3).all()  # at least the three forced-dead units
    assert inplace.layer_info[0]["activation"] == "ReLU"


def test_inplace_relu_matches_oracle(twin_records):
    inplace, _ = twin_records
    oracle = oracle_relu_mlp(relu_mlp(inplace=False))
    np.testing.assert_allclose(inplace["delta_norm"], oracle["delta"], rtol=1e-6)
    np.testing.assert_allclose(inplace["grad_norm"], oracle["grad"], rtol=1e-6)
    np.testing.assert_allclose(inplace["act_mean"], oracle["act_mean"], rtol=1e-6)
    np.testing.assert_allclose(inplace["act_std"], oracle["act_std"], rtol=1e-5)
    np.testing.assert_allclose(inplace["dead_frac"][:, 0], oracle["dead"])
    assert np.isnan(inplace["dead_frac"][:, 1]).all()  # no ReLU after the last layer


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_delta_hook_equals_auto_with_inplace_relu(bias):
    auto = train_probed(relu_mlp(inplace=True, bias=bias), delta="auto")
    hook = train_probed(relu_mlp(inplace=True, bias=bias), delta="hook")
    assert [d["delta_source"] for d in hook.layer_info] == ["output_hook", "output_hook"]
    first = "bias_grad" if bias else "output_hook"  # no bias: auto must hook the output too
    assert [d["delta_source"] for d in auto.layer_info] == [first, "bias_grad"]
    np.testing.assert_allclose(hook["delta_norm"], auto["delta_norm"], rtol=1e-6)
    oracle = oracle_relu_mlp(relu_mlp(inplace=False, bias=bias))
    np.testing.assert_allclose(hook["delta_norm"], oracle["delta"], rtol=1e-6)
    np.testing.assert_allclose(auto["delta_norm"], oracle["delta"], rtol=1e-6)


# -- an in-place op the probe cannot attribute --------------------------------------------


class MulBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(5, 10)
        self.out = nn.Linear(10, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lin(x)
        h.mul_(2)  # in place on the layer's output, invisible to the probe
        return self.out(torch.tanh(h))


def oracle_mul_block(model: MulBlock) -> dict[str, np.ndarray]:
    """The same maths out of place: z = lin(x), h = 2 z; dC/dz by retain_grad."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    out = {k: np.zeros((STEPS, 2)) for k in ("delta", "grad", "act_mean")}
    for i in range(STEPS):
        x, y = batch(i)
        opt.zero_grad()
        z = F.linear(x, model.lin.weight, model.lin.bias)
        z.retain_grad()
        o = F.linear(torch.tanh(z * 2), model.out.weight, model.out.bias)
        o.retain_grad()
        ((o - y) ** 2).mean().backward()
        for j, (t, lin) in enumerate(((z, model.lin), (o, model.out))):
            out["delta"][i, j] = t.grad.double().sum(0).norm().item()
            out["grad"][i, j] = lin.weight.grad.double().norm().item()
        out["act_mean"][i, 1] = o.double().mean().item()
        opt.step()
    return out


@pytest.mark.parametrize("delta", ["auto", "hook"])
def test_unattributable_inplace_op_warns_and_leaves_nan(delta):
    model = MulBlock()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rec = train_probed(model, delta=delta)
    ours = [
        w
        for w in caught
        if issubclass(w.category, RuntimeWarning) and "gradprobe" in str(w.message)
    ]
    assert len(ours) == 1, [str(w.message) for w in ours]  # once, not once per step
    assert "'lin'" in str(ours[0].message)
    assert "in place" in str(ours[0].message)
    assert rec.layers == ["lin", "out"]
    assert np.isnan(rec["act_mean"][:, 0]).all()
    assert np.isnan(rec["act_std"][:, 0]).all()
    assert np.isnan(rec["act_nonfinite"][:, 0]).all()  # not measured, not "0 bad values"
    oracle = oracle_mul_block(MulBlock())
    np.testing.assert_allclose(rec["delta_norm"], oracle["delta"], rtol=1e-6)
    np.testing.assert_allclose(rec["grad_norm"], oracle["grad"], rtol=1e-6)
    np.testing.assert_allclose(rec["act_mean"][:, 1], oracle["act_mean"][:, 1], rtol=1e-6)


def test_unattributable_inplace_op_pytest_warns():
    model = MulBlock()
    with pytest.warns(RuntimeWarning, match=r"'lin' \(Linear\)"):
        train_probed(model)


def test_inplace_functional_relu_in_custom_forward():
    """F.relu(h, inplace=True) is not a module: same treatment as mul_."""

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.fc = nn.Linear(5, 10)
            self.head = nn.Linear(10, 3)

        def forward(self, x):
            return self.head(F.relu(self.fc(x), inplace=True))

    with pytest.warns(RuntimeWarning, match="'fc'"):
        rec = train_probed(Block())
    assert np.isnan(rec["act_mean"][:, 0]).all()
    assert np.isfinite(rec["act_mean"][:, 1]).all()
    assert np.isfinite(rec["delta_norm"]).all()
