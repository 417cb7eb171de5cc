"""train(): a plain PyTorch loop is the oracle; seeds reproduce; NaN and Ctrl-C are kept."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest
import torch

import gradprobe
from gradprobe.lab import trainer
from gradprobe.lab.build import build
from gradprobe.lab.config import Experiment
from gradprobe.lab.losses import accuracy
from gradprobe.lab.trainer import TrainResult, train

# 100 digits in batches of 20: 5 steps per epoch, 3 epochs
TINY = Experiment(seed=3, limit_train=100, depth=2, width=16, epochs=3, batch_size=20)


def oracle_loop(exp: Experiment) -> tuple[torch.nn.Module, list[float]]:
    """The same training written out plainly, with no probe: weights and per-step losses."""
    setup = build(exp)
    x, y = setup.dataset.x_train, setup.dataset.y_train
    losses = []
    for _ in range(exp.epochs):
        order = torch.randperm(len(x), generator=setup.data_generator)
        for start in range(0, len(x), exp.batch_size):
            idx = order[start : start + exp.batch_size]
            setup.optimizer.zero_grad()
            loss = setup.loss_fn(setup.model(x[idx]), y[idx])
            loss.backward()
            setup.optimizer.step()
            losses.append(loss.item())
    return setup.model, losses


def test_training_matches_a_plain_loop_bit_for_bit(tmp_path):
    exp = dataclasses.replace(TINY, momentum=0.5, l2=1.0)
    result = train(exp, tmp_path / "run", progress=False)
    model, losses = oracle_loop(exp)
    for key, value in model.state_dict().items():
        assert torch.equal(result.state_dict[key], value), key
    rec = gradprobe.load(tmp_path / "run")
    np.testing.assert_array_equal(rec.loss, np.array(losses, dtype=np.float32))
    np.testing.assert_array_equal(rec.steps, np.arange(15))
    assert rec.layers == ["fc1", "fc2", "fc3"] and rec.status == "done"
    # the last evaluation is the final model's, split by split
    data = build(exp).dataset
    with torch.no_grad():
        out = model(data.x_test)
        test_loss = float(build(exp).loss_fn(out, data.y_test))
    last = result.evaluation[-1]
    assert last["test_accuracy"] == pytest.approx(accuracy(out, data.y_test, "cross_entropy"))
    assert last["test_loss"] == pytest.approx(test_loss, rel=1e-6)


def test_evaluation_each_epoch_is_in_the_record_meta(tmp_path):
    result = train(TINY, tmp_path / "run", progress=False)
    meta = gradprobe.load(tmp_path / "run").meta
    assert meta["evaluation"] == json.loads(json.dumps(result.evaluation))
    assert [row["epoch"] for row in result.evaluation] == [1, 2, 3]
    assert [row["step"] for row in result.evaluation] == [5, 10, 15]
    for row in result.evaluation:
        for split in ("train", "val", "test"):
            assert 0 <= row[f"{split}_accuracy"] <= 1 and row[f"{split}_loss"] > 0
    assert meta["config"] == TINY.to_dict() and meta["config"]["seed"] == 3
    assert meta["steps_per_epoch"] == 5 and meta["n_train"] == 100


def _assert_same_records(a: TrainResult, b: TrainResult) -> None:
    ra, rb = a.record, b.record
    assert ra.quantities == rb.quantities and ra.layers == rb.layers
    np.testing.assert_array_equal(ra.steps, rb.steps)
    np.testing.assert_array_equal(ra.loss, rb.loss)
    for q in ra.quantities:  # assert_array_equal counts NaN == NaN
        np.testing.assert_array_equal(ra[q], rb[q], err_msg=q)
    assert a.evaluation == b.evaluation


def test_same_seed_same_record_and_weights_other_seed_not(tmp_path):
    first = train(TINY, tmp_path / "a", progress=False)
    second = train(TINY, tmp_path / "b", progress=False)
    _assert_same_records(first, second)
    assert all(torch.equal(first.state_dict[k], v) for k, v in second.state_dict.items())
    other = train(dataclasses.replace(TINY, seed=4), progress=False)
    assert not np.array_equal(first.record.loss, other.record.loss)
    assert not torch.equal(first.state_dict["fc1.weight"], other.state_dict["fc1.weight"])


def test_steps_cap_and_a_partial_epoch():
    result = train(dataclasses.replace(TINY, steps=7), progress=False)
    assert len(result.record) == 7
    assert [(r["epoch"], r["step"]) for r in result.evaluation] == [(1, 5), (1.4, 7)]


def test_regression_evaluation_has_loss_only():
    exp = Experiment(
        seed=0, dataset="adding", seq_len=6, limit_train=40, model="rnn", activation="tanh",
        depth=1, width=8, loss="mse", epochs=1, batch_size=10, init="glorot_uniform",
    )  # fmt: skip
    result = train(exp, progress=False)
    assert result.status == "done" and len(result.record) == 4
    row = result.evaluation[0]
    assert set(row) == {"epoch", "step", "train_loss", "test_loss"}


def test_nonfinite_loss_stops_the_run_kept_as_failed(tmp_path):
    exp = dataclasses.replace(
        TINY, activation="relu", init="he_normal", loss="quadratic", lr=1e4, batch_size=10
    )
    with pytest.warns(RuntimeWarning, match="first non-finite value"):  # the probe's
        result = train(exp, tmp_path / "nan", progress=False)
    assert result.status == "failed"
    rec = gradprobe.load(tmp_path / "nan")
    assert rec.status == "failed" and rec.meta["error"] == result.error
    first_bad = int(rec.steps[np.flatnonzero(~np.isfinite(rec.loss))[0]])
    assert np.all(np.isfinite(rec.loss[rec.steps < first_bad]))
    stated = int(re.search(r"non-finite \(\w+\) at step (\d+)", result.error).group(1))
    assert stated == first_bad
    # it stops at the next read of the loss window: the end of the first epoch here
    assert len(rec) == 10 and "stopped after step 9" in result.error
    assert result.evaluation == []


def test_ctrl_c_keeps_the_steps_so_far_and_marks_interrupted(tmp_path, monkeypatch):
    def build_then_interrupt(exp):
        setup = build(exp)
        count = []

        def interrupt(optimizer, args, kwargs):
            count.append(1)
            if len(count) == 8:  # the 8th step (step 7) is interrupted inside opt.step()
                raise KeyboardInterrupt

        setup.optimizer.register_step_post_hook(interrupt)
        return setup

    monkeypatch.setattr(trainer, "build", build_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        train(TINY, tmp_path / "run", progress=False)
    rec = gradprobe.load(tmp_path / "run")
    assert rec.status == "interrupted"
    np.testing.assert_array_equal(rec.steps, np.arange(7))
    assert np.all(np.isfinite(rec.loss)) and np.all(rec["delta_norm"] > 0)
    assert len(rec.meta["evaluation"]) == 1  # epoch 1 ended before the interrupt


def test_existing_run_needs_overwrite(tmp_path):
    train(dataclasses.replace(TINY, epochs=1), tmp_path / "run", progress=False)
    with pytest.raises(FileExistsError, match="overwrite"):
        train(TINY, tmp_path / "run", progress=False)
    result = train(TINY, tmp_path / "run", progress=False, overwrite=True)
    assert len(gradprobe.load(tmp_path / "run")) == 15
    assert re.fullmatch(r"TrainResult\(done, 15 steps, 3 evaluations, .*run\)", repr(result))
