"""Schedules: which steps are recorded and which measured in detail (the default included)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import gradprobe as gp
from gradprobe.probe.schedule import Every, LogSpaced, as_schedule


def test_log_spaced_with_and_without_a_stride_cap():
    capped = [s for s in range(2500) if LogSpaced(100)(s)]
    want = list(range(10)) + list(range(10, 100, 10)) + list(range(100, 2500, 100))
    assert capped == want
    uncapped = [s for s in range(2500) if LogSpaced()(s)]
    assert uncapped == list(range(10)) + list(range(10, 100, 10)) + list(range(100, 1000, 100)) + [
        1000,
        2000,
    ]
    assert [s for s in range(30) if LogSpaced(1)(s)] == list(range(30))


def test_presets_and_bad_values():
    assert as_schedule("log100") == LogSpaced(100) and as_schedule("log") == LogSpaced()
    assert repr(as_schedule("log100")) == "LogSpaced(100)"
    assert isinstance(as_schedule(7), Every)
    with pytest.raises(ValueError, match=r"'log1000' is not one of the presets: log, log100"):
        as_schedule("log1000", name="detail_every")
    for bad in (0, 50, -10, 2.0, True):
        with pytest.raises(ValueError, match=rf"max_stride={bad!r} must be None or a power of 10"):
            LogSpaced(bad)


def _run(steps: int, **kw) -> gp.Record:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(16, 4), torch.randn(16, 2)
    with gp.watch(model, opt, **kw) as probe:
        for _ in range(steps):
            opt.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            opt.step()
    return probe.record()


def test_watch_measures_in_detail_on_the_log100_schedule_by_default():
    rec = _run(230)
    detail = rec.steps[np.isfinite(rec["grad_abs_mean"]).all(axis=1)]
    want = list(range(10)) + list(range(10, 100, 10)) + [100, 200]
    assert detail.tolist() == want
    assert np.isfinite(rec["grad_norm"]).all()  # the cheap tier: every recorded step
    with gp.watch(nn.Linear(2, 2)) as probe:
        assert "detail_every=LogSpaced(100)" in repr(probe)


def test_the_detail_schedule_counts_recorded_steps():
    rec = _run(60, every=3)
    assert rec.steps.tolist() == list(range(0, 60, 3))
    detail = rec.steps[np.isfinite(rec["update_ratio"]).all(axis=1)]
    # recorded indices 0-9 and 10 (steps 0, 3, ..., 27 and 30); 20 would be step 60
    assert detail.tolist() == list(range(0, 30, 3)) + [30]
