"""The probe reads nothing per parameter or per layer: state stays on the device.

Host reads are counted by wrapping Tensor.item / cpu / tolist / numpy. The probe reads
nothing between flushes, on CPU too (tests/test_probe_sync.py: every model kind and
every way of reading); everything reaches the host once per flush.
"""

from __future__ import annotations

import collections

import pytest
import torch
from torch import nn

import gradprobe as gp

READS = ("item", "cpu", "tolist", "numpy")


@pytest.fixture
def count_reads(monkeypatch):
    counts: collections.Counter = collections.Counter()
    for name in READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _name=name, _original=original, **kwargs):
            counts[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return counts


def _deep_mlp(depth: int = 24) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(16, 16), nn.Tanh()]
    return nn.Sequential(*layers)


@pytest.mark.parametrize("detail_every", [1, 10**9])
def test_host_reads_do_not_grow_with_layers_or_parameters(count_reads, detail_every):
    model = _deep_mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(8, 16), torch.randn(8, 16)
    steps = 20
    with gp.watch(model, opt, detail_every=detail_every, flush_every=1000) as probe:
        count_reads.clear()
        for _ in range(steps):
            opt.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            opt.step()
            probe.log_loss(torch.tensor(1.0))
        in_loop = dict(count_reads)
    # 24 layers, 48 parameter tensors: per-layer reads would be >= 24 per step
    assert in_loop.get("cpu", 0) == in_loop.get("tolist", 0) == in_loop.get("numpy", 0) == 0
    assert in_loop.get("item", 0) == 0  # no finiteness flag either (issue 8)
