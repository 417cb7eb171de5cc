"""`reproduce nielsen-depth`, small: each seed equals a plain single-model torch loop (the
oracle), accuracy well above chance, the no-gain-from-depth check, readable runs (also
after Ctrl-C) that draw the report's figures, and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import gradprobe as gp
from gradprobe.lab.models import mlp
from gradprobe.lab.reproduce import nielsen_depth as nd
from gradprobe.lab.reproduce import published, registry
from gradprobe.lab.reproduce.nielsen_depth_parts import (
    BATCH_SIZE,
    DATA_SEED_OFFSET,
    ETA,
    LAMBDA,
    NETWORKS,
    DepthData,
    DepthRun,
    load_depth_data,
    train_depth,
)

RTOL = 1e-5  # float32: the ensemble's batched products round differently from the solo ones


@pytest.fixture(scope="module")
def mnist():
    """5,000 training and 1,000 validation images of Nielsen's split; skips without MNIST."""
    try:
        return load_depth_data(5000, 1000)
    except FileNotFoundError as err:
        pytest.skip(f"real MNIST files not found: {' '.join(str(err).split())[:200]}")


def part(data: DepthData, n_train: int, n_val: int) -> DepthData:
    return DepthData(data.x_train[:n_train], data.y_train[:n_train],
                     data.x_val[:n_val], data.y_val[:n_val])  # fmt: skip


def plain_loop(sizes, seed: int, data: DepthData, epochs: int):
    """network2.SGD for one seed in plain torch: per-batch losses and, per epoch, the
    validation accuracy and Nielsen's cost, computed from sigmoid outputs in float64."""
    model = mlp(sizes, "sigmoid", "nielsen", generator=torch.Generator().manual_seed(seed))
    weights = [p for p in model.parameters() if p.dim() == 2]
    biases = [p for p in model.parameters() if p.dim() == 1]
    n = len(data.x_train)
    opt = torch.optim.SGD(
        [{"params": weights, "weight_decay": LAMBDA / n}, {"params": biases}], lr=ETA
    )
    onehot = F.one_hot(data.y_train, 10).float()
    order_gen = torch.Generator().manual_seed(DATA_SEED_OFFSET + seed)
    losses, accuracy, cost = [], [], []
    for _ in range(epochs):
        order = torch.randperm(n, generator=order_gen)
        for start in range(0, n, BATCH_SIZE):
            idx = order[start : start + BATCH_SIZE]
            opt.zero_grad()
            loss = F.binary_cross_entropy_with_logits(model(data.x_train[idx]), onehot[idx],
                                                      reduction="sum") / len(idx)  # fmt: skip
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        with torch.no_grad():
            a = torch.sigmoid(model(data.x_val).double())
            y = F.one_hot(data.y_val, 10).double()
            cost.append(float(-(y * a.log() + (1 - y) * (1 - a).log()).sum() / len(a)))
            accuracy.append(float((a.argmax(1) == data.y_val).double().mean()))
    return np.array(losses), np.array(accuracy), np.array(cost)


def test_each_seed_equals_a_plain_torch_loop(mnist, tmp_path):
    data, sizes, seeds, epochs = part(mnist, 500, 1000), NETWORKS[1], (3, 8), 2
    run = train_depth(sizes, seeds, data, epochs=epochs, out=tmp_path)
    for m, seed in enumerate(seeds):
        losses, accuracy, cost = plain_loop(sizes, seed, data, epochs)
        np.testing.assert_allclose(run.val_loss[m], cost, rtol=RTOL)
        assert np.abs(run.val_accuracy[m] - accuracy).max() <= 1 / len(data.x_val)  # 1 image
        rec = gp.load(tmp_path / f"seed{seed}")
        assert rec.status == "done" and rec.layers == ["fc1", "fc2", "fc3"]
        assert rec.steps[-1] >= 50  # the second epoch's steps follow the first's
        np.testing.assert_allclose(rec.loss, losses[rec.steps], rtol=RTOL)
        rows = rec.meta["evaluation"]
        assert [r["epoch"] for r in rows] == [1, 2] and rows[-1]["step"] == 100
        np.testing.assert_allclose([r["val_accuracy"] for r in rows], run.val_accuracy[m])


def test_accuracy_is_well_above_chance(mnist):
    run = train_depth(NETWORKS[0], (0,), mnist, epochs=2)
    assert run.val_accuracy.shape == (1, 2)
    assert run.final_accuracy[0] > 80.0  # chance: 10%; Nielsen's net reaches ~96% on 50,000


def test_small_reproduction_rows_sections_and_figures(mnist, tmp_path):
    pytest.importorskip("matplotlib", reason="the report's figures need matplotlib")
    from gradprobe.viz.figures import speed_lines, training_curves

    result = nd.reproduce_depth((0, 1), part(mnist, 300, 500), epochs=1, full=False,
                                out=tmp_path)  # fmt: skip
    pub = published(nd.NAME)
    assert [r.key for r in result.rows] == list(pub.figures)
    for row in result.rows:
        assert len(row.values) == 2 and all(0 <= v <= 100 for v in row.values)
        assert "after 1 of 30 epochs" in row.why
    assert [c.key for c in result.checks] == ["no-gain-from-depth"]
    assert result.settings["epochs"] == 1 and result.settings["n_train"] == 300
    assert any("NOT the published setup" in note for note in result.notes)
    assert any(note.startswith("Ranked by accuracy") for note in result.notes)
    (table_row,) = result.sections[0].table  # one epoch: the mean over seeds, in %
    assert table_row == {"epoch": 1, **{r.key.split("/")[0]: round(r.mean, 2) for r in result.rows}}
    runs = result.sections[0].runs
    assert len(runs) == 4 and runs == result.sections[1].runs
    for path in runs:
        rec = gp.load(path)
        assert len(rec.meta["evaluation"]) == 1
        training_curves(rec)
        speed_lines(rec)


def fake_run(hidden: int, accuracy: list[float]) -> DepthRun:
    acc = np.array(accuracy)[:, None] / 100.0
    sizes = NETWORKS[hidden - 1]
    return DepthRun(sizes, tuple(range(len(accuracy))), acc, acc * 0, (), 1.0)


def test_no_gain_check_against_one_runs_spread():
    pub = published(nd.NAME)
    two = [96.8, 97.0, 96.9, 96.7]  # sd 0.129 < binomial sd 0.175 on 10,000 images
    flat = [fake_run(h, two) for h in (1, 2, 3, 4)]
    check = nd.no_gain_check(pub, flat, 10_000)
    assert check.holds and "+0.00" in check.evidence and "0.17" in check.evidence
    deeper = [fake_run(1, two), fake_run(2, two), fake_run(3, [a + 0.2 for a in two]),
              fake_run(4, two)]  # fmt: skip
    check = nd.no_gain_check(pub, deeper, 10_000)
    assert not check.holds and "3 hidden +0.20" in check.evidence
    assert math.isclose(nd.binomial_sd(0.965, 10_000), 100 * math.sqrt(0.965 * 0.035 / 1e4))
    with pytest.raises(ValueError, match="missing"):
        nd.no_gain_check(pub, flat[:2], 10_000)


def test_interrupted_run_stays_readable(mnist, tmp_path):
    def stop(line: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_depth(NETWORKS[0], (0,), part(mnist, 100, 100), epochs=3, out=tmp_path, log=stop)
    rec = gp.load(tmp_path / "seed0")
    assert rec.status == "interrupted" and len(rec.meta["evaluation"]) == 1 and len(rec) > 0


def test_bad_input_says_what_is_allowed(mnist):
    data = part(mnist, 100, 100)
    with pytest.raises(ValueError, match=r"sizes=\[784, 30, 20, 10\] is not one of Nielsen"):
        train_depth((784, 30, 20, 10), (0,), data, epochs=1)
    with pytest.raises(ValueError, match="epochs=0 must be an int >= 1"):
        train_depth(NETWORKS[0], (0,), data, epochs=0)
    with pytest.raises(ValueError, match="seeds=.* is empty"):
        train_depth(NETWORKS[0], (), data, epochs=1)
    with pytest.raises(ValueError, match=r"seeds=\[1, 1\] must be distinct ints >= 0"):
        train_depth(NETWORKS[0], (1, 1), data, epochs=1)
    with pytest.raises(ValueError, match=r"n_train=0 must be an int in 1..50000"):
        load_depth_data(0)
    with pytest.raises(ValueError, match=r"n_val=20000 must be an int in 1..10000"):
        load_depth_data(100, 20_000)


def test_the_registry_finds_the_module():
    assert registry.module_for("nielsen-depth") is nd
    assert nd.FULL_EPOCHS == 30 and 1 <= nd.DEFAULT_EPOCHS < nd.FULL_EPOCHS
    assert 2 <= nd.DEFAULT_SEEDS <= nd.FULL_SEEDS
