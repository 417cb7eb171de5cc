"""Two-dimensional toy classification sets of the vanishing-gradient demos: `circles` (the
"two circles" ReLU tutorial) and `blobs` (the two-node chain demo)."""

from __future__ import annotations

import numpy as np

from gradprobe.lab.datasets.base import Dataset, classification, stratified_split

# The chain demo's class means: "near" classes overlap a little, "far" ones not at all.
BLOB_MEANS = {
    "near": ((2.0, 3.0), (7.0, 6.0)),
    "far": ((2.0, 3.0), (17.0, 10.0)),
}
# The chain demo's "covariance" [[1, .5], [1.5, 3]] is not symmetric, so it cannot be a
# covariance; we use it as the mixing matrix A (a Cholesky-style factor): x = mean + A z,
# z ~ N(0, I), which gives the covariance A A^T = [[1.25, 3], [3, 11.25]].
BLOB_MIXING = ((1.0, 0.5), (1.5, 3.0))


def load_circles(
    *, seed: int, random_state: int = 1, n_samples: int = 1000, noise: float = 0.1
) -> Dataset:
    """Two concentric circles, the "two circles" tutorial's data.

    sklearn's ``make_circles(n_samples=1000, noise=0.1, random_state=1)`` (the tutorial's
    call), each feature min-max scaled to [-1, 1]; the first half of the samples is the
    training set and the second half the test set (500 / 500 by default), no validation.
    Classes 0 (outer circle) and 1 (inner), balanced.

    The data come from ``random_state``, not ``seed``: the tutorial fixes random_state=1, so
    every seed gives the same points (the seed still drives the model and the data order in
    training). Pass ``random_state`` to draw other circles.

    Args:
        seed: the experiment's seed (recorded; it does not change these data).
        random_state: sklearn's seed for make_circles.
        n_samples: number of points, split in half.
        noise: standard deviation of the Gaussian noise added to the points.

    Returns:
        Dataset with x of shape (n_samples // 2, 2) per split, classes 0/1.
    """
    from sklearn.datasets import make_circles

    if n_samples < 4:
        raise ValueError(f"n_samples={n_samples} is too small; need at least 4")
    x, y = make_circles(n_samples=n_samples, noise=noise, random_state=random_state)
    low, high = x.min(axis=0), x.max(axis=0)
    x = 2.0 * (x - low) / (high - low) - 1.0  # min-max per feature onto [-1, 1]
    half = n_samples // 2
    description = (
        f"sklearn make_circles(n_samples={n_samples}, noise={noise}, "
        f"random_state={random_state}) scaled to [-1, 1]; first {half} train, rest test"
    )
    splits = {"train": (x[:half], y[:half]), "val": None, "test": (x[half:], y[half:])}
    return classification("circles", description, 2, splits)


def _blob_means(means: str | tuple) -> np.ndarray:
    if isinstance(means, str):
        if means not in BLOB_MEANS:
            raise ValueError(f"means={means!r} is not one of: {', '.join(BLOB_MEANS)}")
        return np.array(BLOB_MEANS[means])
    array = np.asarray(means, dtype=np.float64)
    if array.shape != (2, 2):
        raise ValueError(
            f"means of shape {array.shape} given; need 'near', 'far' or two 2-d means, shape (2, 2)"
        )
    return array


def load_blobs(
    *,
    seed: int,
    means: str | tuple = "near",
    n_per_class: int = 500,
    test_fraction: float = 0.2,
) -> Dataset:
    """Two Gaussian classes in the plane, the two-node chain demo's data.

    Class k is ``x = mean_k + z @ A.T`` with z ~ N(0, I) drawn by
    ``numpy.random.default_rng(seed)`` and A = [[1, .5], [1.5, 3]] (`BLOB_MIXING`), so each
    class has covariance A A^T. Means [2, 3] and [7, 6] ("near", default) or [2, 3] and
    [17, 10] ("far"). Split: stratified and shuffled, 80 % train / 20 % test (800 / 200 by
    default, 100 test points per class), no validation.

    Args:
        seed: seeds the points and the split.
        means: "near", "far" or an array-like of shape (2, 2), one mean per row.
        n_per_class: points per class.
        test_fraction: share of each class in the test set.

    Returns:
        Dataset with x of shape (n, 2), classes 0/1.
    """
    centres = _blob_means(means)
    if n_per_class < 2:
        raise ValueError(f"n_per_class={n_per_class} is too small; need at least 2")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction={test_fraction} is not in (0, 1)")
    rng = np.random.default_rng(seed)
    mixing = np.array(BLOB_MIXING)
    z = rng.standard_normal((2, n_per_class, 2))  # (class, sample, coordinate)
    x = (centres[:, None, :] + z @ mixing.T).reshape(-1, 2)
    y = np.repeat(np.arange(2), n_per_class)
    n_test = round(test_fraction * len(y))
    train, test = stratified_split(y, n_test, rng)
    description = (
        f"two Gaussian blobs, means {centres.tolist()}, x = mean + A z with "
        f"A = {mixing.tolist()}, {n_per_class} per class, seed {seed}; stratified "
        f"{len(train)} train / {len(test)} test"
    )
    splits = {"train": (x[train], y[train]), "val": None, "test": (x[test], y[test])}
    return classification("blobs", description, 2, splits)
