"""Trials in spawned worker processes give exactly the figures of trials run in this
process; a factory that cannot be pickled is refused with a clear message."""

from __future__ import annotations

import pytest
import torch.nn.functional as F

from gradprobe.lab.fixes.api import try_fixes
from tests.test_fixes_api import DATA, deep_sigmoid, sgd


def _figures(result) -> list[tuple]:
    return [
        (
            c.name,
            c.resolved,
            c.new,
            c.gain_spread,
            c.loss_start,
            c.loss_end,
            [r.labels for r in c.runs],
            [r.steps_done for r in c.runs],
        )
        for c in [result.baseline, *result.ranked]
    ]


def test_two_worker_processes_match_one_process(tmp_path):
    kwargs = dict(steps=12, seeds=(0, 1), optimizer=sgd, remedies=["relu_he", "glorot_init"])
    here = try_fixes(deep_sigmoid, DATA, F.cross_entropy, ["vanishing_gradient"], **kwargs)
    pooled = try_fixes(deep_sigmoid, DATA, F.cross_entropy, ["vanishing_gradient"], jobs=2,
                       out=tmp_path / "trials", **kwargs)  # fmt: skip
    assert _figures(pooled) == _figures(here)
    assert (tmp_path / "trials" / "relu_he" / "seed1" / "run.json").is_file()


def test_a_lambda_factory_cannot_go_to_worker_processes():
    with pytest.raises(ValueError, match="picklable"):
        try_fixes(lambda: deep_sigmoid(), DATA, F.cross_entropy, ["vanishing_gradient"],
                  steps=2, seeds=(0,), jobs=2)  # fmt: skip
