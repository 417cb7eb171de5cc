"""`digits`: scikit-learn's 8x8 handwritten digits, shipped with sklearn (no download), the
embedded dataset of `gradprobe demo`."""

from __future__ import annotations

import numpy as np

from gradprobe.lab.datasets.base import Dataset, classification, stratified_split

N_DIGITS = 1797  # samples in sklearn's load_digits (UCI optdigits test set)
PIXEL_MAX = 16.0  # load_digits pixels are counts 0..16 of a 4x4 block of the 32x32 bitmap


def load_digits(*, seed: int, n_val: int = 300, n_test: int = 300) -> Dataset:
    """scikit-learn's 8x8 digits, 10 classes, pixels / 16 in [0, 1].

    Split (seeded, stratified by class, shuffled): ``n_test`` samples for the test set, then
    ``n_val`` of the rest for validation, the remaining ones for training: 1197 / 300 / 300
    of the 1797 by default. Different seeds give different splits.

    Args:
        seed: seeds ``numpy.random.default_rng`` for the split.
        n_val: validation samples (0 for none).
        n_test: test samples.

    Returns:
        Dataset with x of shape (n, 64), float32 in [0, 1], classes 0..9.
    """
    from sklearn.datasets import load_digits as sklearn_digits

    if n_val < 0 or n_test < 1 or n_val + n_test >= N_DIGITS:
        raise ValueError(
            f"n_val={n_val}, n_test={n_test}: need n_val >= 0, n_test >= 1 and "
            f"n_val + n_test < {N_DIGITS}"
        )
    bunch = sklearn_digits()
    x = bunch.data / PIXEL_MAX
    y = bunch.target
    rng = np.random.default_rng(seed)
    rest, test = stratified_split(y, n_test, rng)
    splits = {"test": (x[test], y[test]), "val": None}
    train = rest
    if n_val:
        train_pos, val_pos = stratified_split(y[rest], n_val, rng)
        train, val = rest[train_pos], rest[val_pos]
        splits["val"] = (x[val], y[val])
    splits["train"] = (x[train], y[train])
    description = (
        f"sklearn load_digits (8x8, pixels / 16), seed {seed}; stratified "
        f"{len(train)} train / {n_val} val / {n_test} test"
    )
    return classification("digits", description, 10, splits)
