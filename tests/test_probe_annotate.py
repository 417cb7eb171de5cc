"""Probe.annotate puts a trainer's own fields into run.json; layer_info carries weight shapes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gradprobe as gp


def test_annotate_reaches_run_json_and_record_meta(tmp_path):
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    probe = gp.watch(model, optimizer=opt, run_dir=tmp_path / "run")
    model(torch.randn(5, 3)).sum().backward()
    opt.step()
    probe.annotate(evaluation=[{"epoch": 0, "test_accuracy": 0.5}])
    probe.close()
    rec = gp.load(tmp_path / "run")
    assert rec.meta["evaluation"] == [{"epoch": 0, "test_accuracy": 0.5}]
    assert [e["weight_shapes"] for e in rec.layer_info] == [[[4, 3]], [[2, 4]]]
    with pytest.raises(RuntimeError, match="closed"):
        probe.annotate(x=1)
