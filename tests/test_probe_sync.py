"""Zero host reads between flushes: the probe never reads a tensor's value in a step.

Every method that brings a tensor's value to the host (item, cpu, tolist, numpy, bool,
float, int, and .to() a CPU device from another one) is wrapped; a call counts when a
gradprobe module is on the Python stack. Training steps between flushes must make none,
for the default settings and for every=10, on an MLP, an LSTM and a Transformer; a flush
makes a bounded number (one copy of the state ring, one of each series ring).
"""

from __future__ import annotations

import collections
import sys

import numpy as np
import pytest
import torch
from torch import nn

import gradprobe as gp

READS = ("item", "cpu", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__")


def _from_gradprobe() -> bool:
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_globals.get("__name__", "").startswith("gradprobe"):
            return True
        frame = frame.f_back
    return False


def _to_cpu(self: torch.Tensor, args, kwargs) -> bool:
    target = kwargs.get("device", args[0] if args else None)
    if isinstance(target, torch.Tensor):
        target = target.device
    if not isinstance(target, (str, torch.device)):
        return False
    return torch.device(target).type == "cpu" and self.device.type != "cpu"


@pytest.fixture
def host_reads(monkeypatch):
    """Counter of host reads made from gradprobe code, by method name."""
    counts: collections.Counter = collections.Counter()
    for name in READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _name=name, _original=original, **kwargs):
            if _from_gradprobe():
                counts[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    original_to = torch.Tensor.to

    def to(self, *args, **kwargs):
        if _to_cpu(self, args, kwargs) and _from_gradprobe():
            counts["to(cpu)"] += 1
        return original_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", to)
    return counts


def test_the_counter_sees_reads_from_gradprobe(host_reads):
    """The oracle can fail: reads made from a gradprobe frame are counted, others not."""
    from gradprobe.stats import tensor_stats

    t = torch.ones(3)
    t.sum().item()  # from this test module: not counted
    assert sum(host_reads.values()) == 0
    exec("x.item(); bool(x); float(x); x.tolist()", vars(tensor_stats) | {"x": t.sum()})
    assert host_reads == {"item": 1, "__bool__": 1, "__float__": 1, "tolist": 1}


class TinyTransformer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x).mean(1))


class TinyLSTM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(6, 16, batch_first=True)
        self.head = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(x)[0][:, -1])


def _mlp() -> nn.Module:
    return nn.Sequential(
        nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 5)
    )


MODELS = {
    "mlp": (_mlp, (8, 12)),
    "lstm": (TinyLSTM, (8, 10, 6)),
    "transformer": (TinyTransformer, (8, 7, 32)),
}


def _train(model, opt, probe, x, y, steps: int) -> None:
    for _ in range(steps):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        probe.log_loss(loss)


@pytest.mark.parametrize("every", [1, 10])
@pytest.mark.parametrize("name", list(MODELS))
def test_no_host_read_between_flushes(host_reads, name, every):
    build, shape = MODELS[name]
    torch.manual_seed(0)
    model = build()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(*shape), torch.randint(0, 5, (shape[0],))
    # detail_every=3: cheap and detail steps (and, for the LSTM, delta_norm_t) both run
    with gp.watch(model, opt, every=every, detail_every=3, flush_every=1000, flush_secs=1e9) as p:
        _train(model, opt, p, x, y, 2)  # first steps: layer order, caches
        host_reads.clear()
        _train(model, opt, p, x, y, 25)
        assert dict(host_reads) == {}
        p.flush()
        per_flush = dict(host_reads)
    rec = p.record()
    assert len(rec.steps) == len(range(0, 27, every))
    assert set(per_flush) <= {"numpy"}  # one ring copy (cpu -> cpu: no .to) and its view
    assert 1 <= per_flush["numpy"] <= 1 + (name == "lstm")  # + the delta_norm_t ring


def test_default_settings_no_host_read(host_reads):
    model, _ = _mlp(), None
    opt = torch.optim.Adam(model.parameters())
    x, y = torch.randn(8, 12), torch.randint(0, 5, (8,))
    with gp.watch(model, opt) as p:  # every=1, detail_every=10, flush_every=100
        _train(model, opt, p, x, y, 2)
        host_reads.clear()
        _train(model, opt, p, x, y, 60)
        assert dict(host_reads) == {}


# -- hooks off between recorded steps ------------------------------------------------------


def _gradprobe_hooks(model: nn.Module) -> int:
    """Forward hooks of gradprobe on the model's modules other than the root."""
    return sum(
        1
        for m in model.modules()
        if m is not model
        for hook in m._forward_hooks.values()
        if "gradprobe" in getattr(getattr(hook, "func", hook), "__module__", "")
    )


def test_module_hooks_off_on_steps_not_recorded():
    torch.manual_seed(0)
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(8, 12), torch.randint(0, 5, (8,))
    calls = []
    user = model[2].register_forward_hook(lambda m, a, o: calls.append(1))  # a user's own
    counts = []
    with gp.watch(model, opt, every=3, detail_every=1) as p:
        for _ in range(7):
            counts.append(_gradprobe_hooks(model))
            _train(model, opt, p, x, y, 1)
    assert counts[0] == 3  # three layers (the next layer's hook reads each activation)
    assert counts == [3, 0, 0, 3, 0, 0, 3]  # on exactly before steps 0, 3, 6
    assert _gradprobe_hooks(model) == 0 and len(calls) == 7  # closed; the user's hook ran
    assert list(model[2]._forward_hooks) == [user.id]
    rec = p.record()
    assert list(rec.steps) == [0, 3, 6]
    assert np.isfinite(rec["act_mean"]).all() and np.isfinite(rec["grad_norm"]).all()


def test_every_n_records_what_every_1_records_at_those_steps():
    """Switching the hooks off and on changes nothing measured at the recorded steps."""
    records = {}
    for every in (1, 4):
        torch.manual_seed(0)
        model = _mlp()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        g = torch.Generator().manual_seed(1)
        with gp.watch(model, opt, every=every, detail_every=2) as p:
            for _ in range(9):
                x, y = torch.randn(8, 12, generator=g), torch.randint(0, 5, (8,), generator=g)
                _train(model, opt, p, x, y, 1)
        records[every] = p.record()
    full, sparse = records[1], records[4]
    assert list(sparse.steps) == [0, 4, 8]
    for q in ("grad_norm", "delta_norm", "act_mean", "act_std", "grad_nonfinite", "loss"):
        np.testing.assert_allclose(
            sparse[q] if q != "loss" else sparse.loss,
            (full[q] if q != "loss" else full.loss)[[0, 4, 8]],
            rtol=1e-6,
        )


# -- when the gradients are read -----------------------------------------------------------


OPTIMIZERS = {
    "sgd": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.1, maximize=True),
    "adam": lambda ps: torch.optim.Adam(ps, lr=0.1, weight_decay=0.1, maximize=True),
    "adamw-foreach": lambda ps: torch.optim.AdamW(ps, lr=0.1, foreach=True),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_gradients_are_those_the_optimizer_received(name):
    """Read at the pre-step hook (weight decay and maximize must not leak in)."""
    torch.manual_seed(0)
    model = _mlp()
    opt = OPTIMIZERS[name](model.parameters())
    x, y = torch.randn(8, 12), torch.randint(0, 5, (8,))
    with gp.watch(model, opt, detail_every=2) as p:
        expected = []
        for _ in range(3):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            expected.append([model[i].weight.grad.norm().item() for i in (0, 2, 4)])
            opt.step()
    np.testing.assert_allclose(p.record()["grad_norm"], expected, rtol=1e-5)


def test_closure_optimizer_gradients_read_after_the_step():
    """LBFGS computes the gradients inside step(closure): they are read after it."""
    torch.manual_seed(0)
    model = _mlp()
    opt = torch.optim.LBFGS(model.parameters(), lr=0.1, max_iter=3)
    x, y = torch.randn(8, 12), torch.randint(0, 5, (8,))

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    with gp.watch(model, opt, detail_every=2) as p:
        expected = []
        for _ in range(3):
            opt.step(closure)
            expected.append([model[i].weight.grad.norm().item() for i in (0, 2, 4)])
    np.testing.assert_allclose(p.record()["grad_norm"], expected, rtol=1e-5)


@pytest.mark.parametrize("detail_every", [1, 10**9])
def test_no_host_read_in_a_deep_net_with_many_parameters(host_reads, detail_every):
    """24 layers, 48 parameter tensors: a per-layer or per-parameter read would show."""
    layers: list[nn.Module] = []
    for _ in range(24):
        layers += [nn.Linear(16, 16), nn.Tanh()]
    model = nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(8, 16), torch.randn(8, 16)
    with gp.watch(model, opt, detail_every=detail_every, flush_every=1000) as probe:
        host_reads.clear()
        for _ in range(20):
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            opt.step()
            probe.log_loss(loss)
        assert sum(host_reads.values()) == 0, dict(host_reads)
