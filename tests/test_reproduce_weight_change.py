"""weight-change: the layer ordering on a small MNIST run, the recorded mean |W_new - W_old|
against weights copied by hand around each step of the original's momentum update, the
claims' checks on known arrays, the reproduction's structure and bad input."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import gradprobe as gp
from gradprobe.lab.reproduce import registry
from gradprobe.lab.reproduce.weight_change import (
    cost_check,
    increasing,
    order_check,
    ratios,
    reproduce_sizes,
)
from gradprobe.lab.reproduce.weight_change_parts import (
    Split,
    WeightChangeRun,
    batch_orders,
    epoch_means,
    label_entropy,
    load_split,
    make_network,
    make_optimizer,
    train_one,
)

SMALL_HIDDEN = (8, 6, 4)


def synthetic_split(n: int = 300, n_in: int = 20, seed: int = 0) -> Split:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, n_in, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return Split(x, y, x[:50], y[:50], description="synthetic")


@pytest.mark.usefixtures("mnist_source")
def test_small_mnist_run_changes_the_input_layer_least():
    split = load_split(n_train=1500, n_test=200)
    assert split.x_train.shape == (1500, 784) and float(split.x_train.max()) == pytest.approx(1)
    run = train_one(split, seed=0, hidden=(100, 75, 50), epochs=2)
    assert run.change.shape == (30, 4) and np.isfinite(run.change).all()
    assert run.layers == ("fc1", "fc2", "fc3", "fc4") and run.status == "done"
    assert increasing(run.change.mean(axis=0))
    assert increasing(epoch_means(run.change, run.steps_per_epoch)).all()
    assert (ratios(run.change.mean(axis=0)) > 1.5).all()  # clear steps, not noise


@pytest.mark.usefixtures("mnist_source")
def test_the_idx_split_cannot_ask_for_more_than_the_training_file():
    with pytest.raises(ValueError, match="exceeds the 60000"):
        load_split(n_train=59_500, n_test=1_000)


def test_kaggle_csv_split_is_the_originals_first_rows_and_last_rows(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(12, 784))
    labels = np.arange(12) % 10
    rows = [",".join(map(str, [lab, *px])) for lab, px in zip(labels, pixels)]
    header = "label," + ",".join(f"pixel{i}" for i in range(784))
    csv = tmp_path / "train.csv"
    csv.write_text("\n".join([header, *rows]) + "\n")
    split = load_split(n_train=9, n_test=3, path=csv)
    np.testing.assert_allclose(split.x_train.numpy(), pixels[:9] / 255.0, rtol=1e-6)
    np.testing.assert_allclose(split.x_test.numpy(), pixels[-3:] / 255.0, rtol=1e-6)
    assert split.y_test.tolist() == labels[-3:].tolist() and "Kaggle CSV" in split.description


def _hand_replay(split: Split, seed: int, epochs: int, batch: int, nesterov: bool = False):
    """The original's update written out: v <- mu v - lr g; W <- W + v (Theano updates),
    with every weight matrix copied before and after each step."""
    model = make_network(SMALL_HIDDEN, seed, n_in=split.x_train.shape[1])
    params = list(model.parameters())
    velocity = [torch.zeros_like(p) for p in params]
    weights = [m.weight for m in model if isinstance(m, torch.nn.Linear)]
    w0 = [w.detach().clone() for w in weights]
    change, costs = [], []
    for batches in batch_orders(len(split.x_train), batch, epochs, seed):
        for idx in batches:
            before = [w.detach().double().clone() for w in weights]
            cost = F.cross_entropy(model(split.x_train[idx]), split.y_train[idx])
            grads = torch.autograd.grad(cost, params)
            with torch.no_grad():
                for p, v, g in zip(params, velocity, grads):
                    v.mul_(0.99).sub_(0.01 * g)
                    p.add_(0.99 * v - 0.01 * g if nesterov else v)
            change.append(
                [float((w.detach().double() - b).abs().mean()) for w, b in zip(weights, before)]
            )
            costs.append(float(cost.detach()))
    moved = [float((w.detach() - a).abs().mean() / a.abs().mean()) for w, a in zip(weights, w0)]
    return np.array(change), np.array(costs), np.array(moved)


def test_recorded_weight_change_equals_weights_copied_around_each_step(tmp_path):
    split = synthetic_split()
    run = train_one(split, seed=3, hidden=SMALL_HIDDEN, epochs=2, batch_size=50,
                    run_dir=tmp_path / "run")  # fmt: skip
    change, costs, moved = _hand_replay(split, seed=3, epochs=2, batch=50)
    assert run.change.shape == change.shape == (12, 4)
    np.testing.assert_allclose(run.change, change, rtol=1e-4)
    np.testing.assert_allclose(run.cost, costs, rtol=1e-5)
    np.testing.assert_allclose(run.movement, moved, rtol=1e-4)
    rec = gp.load(tmp_path / "run")  # the run directory holds the same curve
    np.testing.assert_allclose(rec["weight_change_mean"], change, rtol=1e-4)
    assert rec.status == "done" and len(rec.meta["evaluation"]) == 2
    nesterov, _, _ = _hand_replay(split, seed=3, epochs=2, batch=50, nesterov=True)
    assert not np.allclose(run.change, nesterov, rtol=1e-2)  # the oracle tells them apart


def _fake_run(change, cost, seed=0, spe=2) -> WeightChangeRun:
    change = np.asarray(change, dtype=float)
    n_layers = change.shape[1]
    return WeightChangeRun(
        seed=seed, layers=tuple(f"fc{i + 1}" for i in range(n_layers)), change=change,
        cost=np.asarray(cost, dtype=float), steps_per_epoch=spe,
        movement=np.linspace(0.01, 0.5, n_layers), saturation=np.zeros((2, n_layers)),
        evaluation=[{"epoch": 1, "test_accuracy": 0.5}],
    )  # fmt: skip


def test_epoch_means_ratios_and_ordering_on_known_arrays():
    change = np.array([[1, 2, 4], [3, 4, 8], [1, 1, 1], [1, 3, 1]], dtype=float)
    np.testing.assert_allclose(epoch_means(change, 2), [[2, 3, 6], [1, 2, 1]])
    np.testing.assert_allclose(epoch_means(change, 3)[1], [1, 3, 1])  # partial last epoch
    np.testing.assert_allclose(ratios([1.0, 2.0, 8.0]), [2.0, 4.0])
    assert increasing([1.0, 2.0, 3.0]) and not increasing([1.0, 1.0, 3.0])
    assert not increasing([1.0, np.nan, 3.0])


def test_order_check_needs_every_epoch_of_every_seed_to_rise():
    rising = _fake_run([[1, 2, 4], [1, 3, 5], [2, 3, 4], [1, 2, 3]], [2, 2, 1, 1])
    assert order_check([rising], "claim").holds
    # over all steps it rises (1.5 < 2.5 < 3.25), not in the second epoch (2 < 3 > 2.5)
    one_bad_epoch = _fake_run([[1, 2, 4], [1, 2, 4], [2, 3, 2], [2, 3, 3]], [2, 2, 1, 1])
    assert increasing(one_bad_epoch.change.mean(axis=0))
    check = order_check([rising, one_bad_epoch], "claim")
    assert not check.holds and "rising in epochs 1 (1/2;" in check.evidence


def test_cost_check_compares_the_last_epoch_with_the_best_constant_prediction():
    chance = label_entropy(np.repeat(np.arange(10), 7))
    assert chance == pytest.approx(math.log(10))
    assert label_entropy([0, 0, 1, 1]) == pytest.approx(math.log(2))
    change = np.ones((4, 3)) * [1, 2, 3]
    learned = _fake_run(change, [2.4, 2.3, 1.0, 1.1])
    stalled = _fake_run(change, [2.4, 2.3, 2.31, 2.30])
    check = cost_check([learned], chance, "claim")
    assert check.holds and "from epoch 2 below chance" in check.evidence
    check = cost_check([learned, stalled], chance, "claim")
    assert not check.holds and "2.3026" in check.evidence and "never below" in check.evidence
    # the cost falls, but meanwhile the input layer changes more than the next one
    reordered = _fake_run(np.ones((4, 3)) * [2, 1, 3], [2.4, 2.3, 1.0, 1.1])
    check = cost_check([reordered], chance, "claim")
    assert not check.holds and "the input layer's NOT the smallest" in check.evidence


def test_reproduction_writes_loadable_runs_and_json(tmp_path):
    split = synthetic_split(n=200)
    lines: list[str] = []
    rep = reproduce_sizes((0, 1), out=tmp_path, log=lines.append, epochs=1,
                          hidden=SMALL_HIDDEN, split=split, full=False)  # fmt: skip
    assert [c.key for c in rep.checks] == ["input-layers-change-least", "cost-falls"]
    assert rep.rows == [] and rep.seeds == (0, 1) and rep.settings["steps_per_epoch"] == 2
    assert [s.figures for s in rep.sections] == [("weight_change",), ("training_curves",)]
    assert rep.sections[0].runs == (tmp_path / "seed0",)
    for seed in (0, 1):
        assert gp.load(tmp_path / f"seed{seed}").status == "done"
    assert any("j / n_batches: 0 / 2" in line for line in lines)
    assert "1 epochs instead of the original's 30" in rep.table()
    json.loads(json.dumps(rep.to_dict(), allow_nan=False))
    module = registry.module_for("weight-change")
    assert module.NAME == "weight-change" and callable(module.run)
    assert module.DEFAULT_SEEDS >= 1 and module.FULL_SEEDS >= 1


def test_a_non_finite_cost_fails_the_run_with_an_honest_status(tmp_path):
    split = synthetic_split(n=100)
    x = split.x_train.clone()
    x[:, 0] = math.nan
    bad = Split(x, split.y_train, x[:10], split.y_train[:10])
    with pytest.warns(RuntimeWarning, match="first non-finite value at step 0"):
        run = train_one(bad, seed=0, hidden=SMALL_HIDDEN, epochs=2, batch_size=50,
                        run_dir=tmp_path / "nan")  # fmt: skip
    assert run.status == "failed" and "non-finite" in run.error
    assert gp.load(tmp_path / "nan").status == "failed"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: load_split(n_train=0), "n_train=0"),
        (lambda: make_network((), 0), "empty"),
        (lambda: make_network((10, 0), 0), "hidden size=0"),
        (lambda: make_network((10,), -1), "seed=-1"),
        (lambda: batch_orders(10, 20, 1, 0), "batch_size=20 is larger"),
        (lambda: batch_orders(10, 5, 0, 0), "epochs=0"),
        (lambda: make_optimizer(make_network((4,), 0), 0.0, 0.9), "lr=0.0"),
        (lambda: make_optimizer(make_network((4,), 0), 0.01, 1.0), "momentum=1.0"),
        (lambda: Split(torch.zeros(5, 3), torch.zeros(4), torch.zeros(1, 3), torch.zeros(1)),
         "do not fit"),
        (lambda: epoch_means(np.zeros(5), 2), "not (n_steps"),
        (lambda: epoch_means(np.zeros((5, 2)), 0), "steps_per_epoch=0"),
        (lambda: reproduce_sizes((), out="unused", log=print), "seeds=()"),
    ],
)  # fmt: skip
def test_bad_input_says_what_was_wrong(call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call()
