"""Schedules: which steps are recorded and which measured in detail (the default included)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import gradprobe as gp
from gradprobe.probe.schedule import DETAIL_EVERY, Every, LogSpaced, as_schedule


def test_every_with_a_second_stride():
    s = Every(10, until=1000, then=100)
    assert [k for k in range(2500) if s(k)] == list(range(0, 1000, 10)) + list(
        range(1000, 2500, 100)
    )
    odd = Every(3, until=10, then=4)  # the second stride counts from `until`
    assert [k for k in range(25) if odd(k)] == [0, 3, 6, 9, 10, 14, 18, 22]
    assert [k for k in range(25) if Every(5)(k)] == [0, 5, 10, 15, 20]
    assert repr(s) == "Every(10, until=1000, then=100)" and repr(Every(5)) == "Every(5)"
    assert s == DETAIL_EVERY and Every(5) != s


def test_bad_schedules_say_what_is_allowed():
    for kw, msg in [
        ({"n": 0}, r"n=0 must be an int >= 1"),
        ({"n": 2.5}, r"n=2.5 must be an int >= 1"),
        ({"n": 10, "until": 100}, r"until=100 and then=None go together"),
        ({"n": 10, "until": 0, "then": 5}, r"until=0 must be an int >= 1"),
        ({"n": 10, "until": 50, "then": True}, r"then=True must be an int >= 1"),
    ]:
        with pytest.raises(ValueError, match=msg):
            Every(**kw)
    with pytest.raises(ValueError, match=r"'log100' is not one of the presets: log"):
        as_schedule("log100", name="detail_every")
    assert isinstance(as_schedule("log"), LogSpaced) and isinstance(as_schedule(7), Every)


def _run(steps: int, **kw) -> gp.Record:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(16, 4), torch.randn(16, 2)
    with gp.watch(model, opt, flush_every=500, **kw) as probe:
        for _ in range(steps):
            opt.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            opt.step()
    return probe.record()


def test_watch_measures_in_detail_every_10th_then_every_100th_by_default():
    rec = _run(1250)
    detail = rec.steps[np.isfinite(rec["grad_abs_mean"]).all(axis=1)]
    assert detail.tolist() == list(range(0, 1000, 10)) + [1000, 1100, 1200]
    assert np.isfinite(rec["grad_norm"]).all()  # the cheap tier: every recorded step
    with gp.watch(nn.Linear(2, 2)) as probe:
        assert "detail_every=Every(10, until=1000, then=100)" in repr(probe)


def test_the_detail_schedule_counts_recorded_steps():
    rec = _run(60, every=3, detail_every=Every(2, until=8, then=5))
    assert rec.steps.tolist() == list(range(0, 60, 3))
    detail = rec.steps[np.isfinite(rec["update_ratio"]).all(axis=1)]
    # recorded indices 0, 2, 4, 6, then 8, 13, 18: steps 0, 6, 12, 18, 24, 39, 54
    assert detail.tolist() == [0, 6, 12, 18, 24, 39, 54]
