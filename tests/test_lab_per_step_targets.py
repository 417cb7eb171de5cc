"""copy_memory, a target at every time step: the recurrent head reads every step and trains."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gradprobe.lab.config import Experiment
from gradprobe.lab.datasets.sequences import copy_memory_baseline
from gradprobe.lab.losses import accuracy, make_loss
from gradprobe.lab.models import recurrent
from gradprobe.lab.trainer import train


def test_readout_all_applies_the_head_at_every_step():
    model = recurrent("gru", 3, 5, 4, readout="all", generator=torch.Generator().manual_seed(0))
    x = torch.randn(2, 7, 3)
    out = model(x)
    hidden, _ = model.rnn(x)
    torch.testing.assert_close(out, model.head(hidden))  # (B, T, C)
    assert out.shape == (2, 7, 4)
    with pytest.raises(ValueError, match="readout='first' is not one of: last, all"):
        recurrent("gru", 3, 5, 4, readout="first")


def test_per_step_cross_entropy_and_accuracy_match_the_flattened_oracle():
    logits, targets = torch.randn(3, 6, 9), torch.randint(0, 9, (3, 6))
    expected = F.cross_entropy(logits.reshape(18, 9), targets.reshape(18))
    torch.testing.assert_close(make_loss("cross_entropy")(logits, targets), expected)
    hits = (logits.argmax(-1) == targets).float().mean().item()
    assert accuracy(logits, targets, "cross_entropy") == pytest.approx(hits)


def test_copy_memory_trains_and_its_loss_starts_near_uniform(tmp_path):
    exp = Experiment(seed=0, dataset="copy_memory", model="lstm", seq_len=10, depth=1,
                     width=16, init="orthogonal", optimizer="adam", lr=1e-2, batch_size=50,
                     limit_train=500, epochs=3)  # fmt: skip
    result = train(exp, tmp_path / "copy", progress=False)
    assert result.status == "done"
    rec = result.record
    # 9 target classes at init: a per-step loss near ln 9; training takes it toward (and
    # with long enough training, below) the memoryless baseline 10 ln 8 / (T + 20)
    assert abs(rec.loss[0] - math.log(9)) < 0.3
    assert rec.loss[-10:].mean() < 0.5 * rec.loss[0]
    assert copy_memory_baseline(10) == pytest.approx(10 * math.log(8) / 30)
    assert rec.series["delta_norm_t"].shape[-1] == 30
