"""Datasets of the lab (all but MNIST): shapes, dtypes, splits, balance, seeding, and each
one's values against an oracle rebuilt from its definition."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradprobe.lab.datasets import DATASETS, Dataset, dataset_params, load_dataset
from gradprobe.lab.datasets.base import stratified_split
from gradprobe.lab.datasets.sequences import copy_memory_baseline


def all_x(data: Dataset) -> torch.Tensor:
    parts = [data.x_train, data.x_val, data.x_test]
    return torch.cat([p for p in parts if p is not None])


def all_y(data: Dataset) -> torch.Tensor:
    parts = [data.y_train, data.y_val, data.y_test]
    return torch.cat([p for p in parts if p is not None])


def sorted_rows(x: np.ndarray) -> np.ndarray:
    return x[np.lexsort(x.T[::-1])]


def assert_same(a: Dataset, b: Dataset) -> None:
    for split in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        left, right = getattr(a, split), getattr(b, split)
        assert (left is None) == (right is None)
        if left is not None:
            assert torch.equal(left, right), split


def test_registry_names_and_errors():
    assert DATASETS == ("circles", "blobs", "digits", "mnist", "adding", "copy_memory")
    with pytest.raises(ValueError, match=r"dataset='cirles' is not one of: circles, blobs"):
        load_dataset("cirles", seed=0)
    with pytest.raises(ValueError, match=r"adding does not take T; .*seq_len=100"):
        load_dataset("adding", seed=0, T=5)
    with pytest.raises(ValueError, match=r"seed='1' is not an int"):
        load_dataset("blobs", seed="1")
    assert dataset_params("blobs") == {"means": "near", "n_per_class": 500, "test_fraction": 0.2}


@pytest.mark.parametrize("name", ["circles", "blobs", "digits", "adding", "copy_memory"])
def test_same_seed_same_tensors(name):
    small = {"adding": {"n_train": 50, "n_test": 20}, "copy_memory": {"n_train": 50}}
    params = small.get(name, {})
    first = load_dataset(name, seed=3, **params)
    assert_same(first, load_dataset(name, seed=3, **params))
    assert first.x_train.dtype == torch.float32 and first.description
    assert f"{first.name!r}" in repr(first) and str(len(first.x_train)) in repr(first)


def test_circles_matches_the_tutorial():
    from sklearn.datasets import make_circles

    data = load_dataset("circles", seed=0)
    x, y = make_circles(n_samples=1000, noise=0.1, random_state=1)
    scaled = 2 * (x - x.min(0)) / (x.max(0) - x.min(0)) - 1
    assert data.x_train.shape == (500, 2) and data.x_test.shape == (500, 2) and data.x_val is None
    np.testing.assert_allclose(data.x_train.numpy(), scaled[:500], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(data.y_test.numpy(), y[500:])
    x_all = all_x(data)
    assert torch.equal(x_all.min(0).values, torch.tensor([-1.0, -1.0]))
    assert torch.equal(x_all.max(0).values, torch.tensor([1.0, 1.0]))
    assert all_y(data).bincount().tolist() == [500, 500]
    assert data.n_classes == 2 and data.n_outputs == 2 and data.n_features == 2
    # The tutorial's random_state fixes the points; seed leaves them alone.
    assert_same(data, load_dataset("circles", seed=9))
    other = load_dataset("circles", seed=0, random_state=2)
    assert not torch.equal(other.x_train, data.x_train)


def test_blobs_are_mean_plus_mixed_normal():
    data = load_dataset("blobs", seed=5)
    assert data.x_train.shape == (800, 2) and data.x_test.shape == (200, 2)
    assert data.y_test.bincount().tolist() == [100, 100]
    assert data.y_train.bincount().tolist() == [400, 400]
    # Oracle: the points drawn by the documented recipe, in any order.
    z = np.random.default_rng(5).standard_normal((2, 500, 2))
    mixing = np.array([[1.0, 0.5], [1.5, 3.0]])
    expected = (np.array([[2.0, 3.0], [7.0, 6.0]])[:, None] + z @ mixing.T).reshape(-1, 2)
    got = all_x(data).numpy().astype(np.float64)
    np.testing.assert_allclose(sorted_rows(got), sorted_rows(expected), rtol=1e-6)
    assert not torch.equal(load_dataset("blobs", seed=6).x_train, data.x_train)


def test_blobs_far_means_and_covariance():
    data = load_dataset("blobs", seed=0, means="far", n_per_class=20_000)
    x, y = all_x(data).double(), all_y(data)
    mixing = torch.tensor([[1.0, 0.5], [1.5, 3.0]], dtype=torch.float64)
    for label, mean in ((0, [2.0, 3.0]), (1, [17.0, 10.0])):
        points = x[y == label]
        # standard error of a mean is at most sqrt(11.25 / 20000) = 0.024; 5 sigma
        torch.testing.assert_close(points.mean(0), torch.tensor(mean).double(), atol=0.12, rtol=0)
        torch.testing.assert_close(torch.cov(points.T), mixing @ mixing.T, rtol=0.05, atol=0.05)
    with pytest.raises(ValueError, match=r"means='farther' is not one of: near, far"):
        load_dataset("blobs", seed=0, means="farther")
    custom = load_dataset("blobs", seed=0, means=[[0, 0], [1, 1]], n_per_class=10)
    assert custom.x_train.shape == (16, 2)


@settings(max_examples=40, deadline=None)
@given(
    counts=st.lists(st.integers(1, 30), min_size=1, max_size=5),
    share=st.floats(0.05, 0.95),
    seed=st.integers(0, 2**32 - 1),
)
def test_stratified_split_is_exact_and_proportional(counts, share, seed):
    y = np.repeat(np.arange(len(counts)), counts)
    n_take = min(max(1, round(share * len(y))), len(y) - 1)
    if len(y) < 2:
        return
    rest, taken = stratified_split(y, n_take, np.random.default_rng(seed))
    assert len(taken) == n_take and len(rest) == len(y) - n_take
    assert sorted(np.concatenate([rest, taken]).tolist()) == list(range(len(y)))
    quota = n_take * np.array(counts) / len(y)
    assert np.all(np.abs(np.bincount(y[taken], minlength=len(counts)) - quota) < 1)


def test_digits_split_and_pixels():
    from sklearn.datasets import load_digits

    data = load_dataset("digits", seed=0)
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (1197, 300, 300)
    assert data.x_train.shape[1] == 64 and data.n_classes == 10
    x = all_x(data)
    assert x.min() == 0.0 and x.max() == 1.0
    reference = load_digits()
    np.testing.assert_array_equal(
        sorted_rows(np.c_[x.numpy() * 16, all_y(data).numpy()]),
        sorted_rows(np.c_[reference.data, reference.target]),
    )
    quota = 300 * np.bincount(reference.target) / 1797
    assert np.all(np.abs(data.y_test.bincount().numpy() - quota) < 1)
    assert np.all(np.abs(data.y_val.bincount().numpy() - quota) < 1)
    assert not torch.equal(load_dataset("digits", seed=1).y_test, data.y_test)


def test_adding_markers_and_targets():
    data = load_dataset("adding", seed=0, seq_len=37, n_train=400, n_test=30)
    assert data.x_train.shape == (400, 37, 2) and data.y_train.shape == (400, 1)
    assert data.task == "regression" and data.n_classes is None and data.n_outputs == 1
    assert data.seq_len == 37 and data.n_features == 2 and data.y_train.dtype == torch.float32
    values, marker = data.x_train[..., 0], data.x_train[..., 1]
    assert values.min() >= 0 and values.max() < 1
    assert torch.equal(marker[:, :18].sum(1), torch.ones(400))  # first half: steps 0..17
    assert torch.equal(marker[:, 18:].sum(1), torch.ones(400))
    torch.testing.assert_close((values * marker).sum(1, keepdim=True), data.y_train)
    assert abs(data.y_train.mean().item() - 1.0) < 0.1  # E[U + U'] = 1, sd 0.41/sqrt(400)


def test_adding_test_set_does_not_depend_on_n_train():
    a = load_dataset("adding", seed=1, seq_len=500, n_train=10, n_test=5)
    b = load_dataset("adding", seed=1, seq_len=500, n_train=20, n_test=5)
    assert torch.equal(a.x_test, b.x_test)
    assert not torch.equal(load_dataset("adding", seed=2, seq_len=500, n_train=10).x_test, a.x_test)
    with pytest.raises(ValueError, match=r"seq_len=1 is not allowed; need an int >= 2"):
        load_dataset("adding", seed=0, seq_len=1)


def test_copy_memory_layout():
    t = 30
    data = load_dataset("copy_memory", seed=0, seq_len=t, n_train=200, n_test=10)
    x, y = data.x_train, data.y_train
    assert x.shape == (200, t + 20, 10) and y.shape == (200, t + 20) and y.dtype == torch.int64
    assert data.seq_len == t + 20 and data.n_features == 10 and data.n_classes == 9
    assert data.per_step_targets
    assert torch.equal(x.sum(-1), torch.ones(200, t + 20))  # one-hot
    tokens = x.argmax(-1)
    symbols = tokens[:, :10]
    assert symbols.min() == 1 and symbols.max() == 8
    assert torch.all(tokens[:, 10 : 10 + t - 1] == 0) and torch.all(tokens[:, 10 + t - 1] == 9)
    assert torch.all(tokens[:, -10:] == 0)
    assert torch.all(y[:, :-10] == 0) and torch.equal(y[:, -10:], symbols)


def test_copy_memory_baseline_is_the_memoryless_cross_entropy():
    t = 50
    data = load_dataset("copy_memory", seed=4, seq_len=t, n_train=100, n_test=10)
    logits = torch.full((100, t + 20, 9), -math.inf)
    logits[:, :-10, 0] = 0.0  # certain blank until the output phase
    logits[:, -10:, 1:] = 0.0  # uniform over the 8 symbols in it
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), data.y_train.flatten())
    assert loss.item() == pytest.approx(copy_memory_baseline(t), rel=1e-6)
    assert copy_memory_baseline(t) == pytest.approx(10 * math.log(8) / (t + 20))


def test_dataset_checks_its_tensors():
    x, y = torch.zeros(4, 2), torch.zeros(4, dtype=torch.int64)
    common = {"name": "toy", "x_val": None, "y_val": None, "description": "toy"}
    with pytest.raises(TypeError, match=r"toy train: inputs are torch.float64"):
        Dataset(x_train=x.double(), y_train=y, x_test=x, y_test=y, n_classes=2,
                task="classification", **common)  # fmt: skip
    with pytest.raises(ValueError, match=r"toy test: 4 inputs but 3 targets"):
        Dataset(x_train=x, y_train=y, x_test=x, y_test=y[:3], n_classes=2,
                task="classification", **common)  # fmt: skip
    with pytest.raises(ValueError, match=r"task='ranking' is not one of: classification"):
        Dataset(x_train=x, y_train=y, x_test=x, y_test=y, n_classes=2, task="ranking", **common)
