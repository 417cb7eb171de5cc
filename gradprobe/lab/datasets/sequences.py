"""Long-time-lag sequence tasks for recurrent nets: `adding` (Hochreiter & Schmidhuber 1997,
in the form of Le, Jaitly & Hinton 2015) and `copy_memory` (Arjovsky, Shah & Bengio 2016).

Train and test sets come from two independent streams spawned from the seed
(``numpy.random.SeedSequence(seed).spawn(2)``), so the test set does not change with n_train.
"""

from __future__ import annotations

import numpy as np
import torch

from gradprobe.lab.datasets.base import Dataset

# Arjovsky et al. 2016, section 4.1: symbols 1..8 to remember, 0 blank, 9 delimiter.
N_SYMBOLS = 8
BLANK = 0
DELIMITER = 9
N_COPY = 10  # symbols to remember (Arjovsky et al. 2016)


def _check_sizes(seq_len: int, n_train: int, n_test: int, min_len: int) -> None:
    for name, value, low in (("seq_len", seq_len, min_len), ("n_train", n_train, 1)):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"{name}={value!r} is not allowed; need an int >= {low}")
    if not isinstance(n_test, int) or n_test < 1:
        raise ValueError(f"n_test={n_test!r} is not allowed; need an int >= 1")


def _streams(seed: int) -> list[np.random.Generator]:
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2)]


def adding_sequences(n: int, seq_len: int, rng: np.random.Generator) -> tuple:
    """n adding-problem sequences of length T = seq_len.

    Returns:
        (x, y): float32 arrays of shape (n, T, 2) and (n, 1). Channel 0 holds values
        uniform in [0, 1]; channel 1 is a marker with one 1 in the first half (steps
        0..T//2-1) and one in the second half (steps T//2..T-1). y is the sum of the two
        marked values.
    """
    values = rng.uniform(0.0, 1.0, size=(n, seq_len))
    first = rng.integers(0, seq_len // 2, size=n)
    second = rng.integers(seq_len // 2, seq_len, size=n)
    marker = np.zeros((n, seq_len))
    rows = np.arange(n)
    marker[rows, first] = 1.0
    marker[rows, second] = 1.0
    y = values[rows, first] + values[rows, second]
    x = np.stack([values, marker], axis=-1)  # (n, T, 2)
    return x.astype(np.float32), y[:, None].astype(np.float32)


def load_adding(*, seed: int, seq_len: int = 100, n_train: int = 10_000, n_test: int = 1000):
    """The adding problem: regress the sum of the two marked values of a sequence.

    Inputs (n, T, 2), targets (n, 1) float32 (see `adding_sequences`); task "regression",
    n_classes None. Split: n_train training and n_test test sequences, no validation.
    Predicting the constant 1 gives a mean squared error of 1/6 (the variance of a sum of
    two U(0, 1)), the baseline a net must beat.

    Args:
        seed: seeds both streams; same seed, same sequences.
        seq_len: T, the number of steps (>= 2; several hundred is fine).
        n_train: training sequences.
        n_test: test sequences.
    """
    _check_sizes(seq_len, n_train, n_test, min_len=2)
    train_rng, test_rng = _streams(seed)
    x_train, y_train = adding_sequences(n_train, seq_len, train_rng)
    x_test, y_test = adding_sequences(n_test, seq_len, test_rng)
    return Dataset(
        name="adding",
        x_train=torch.from_numpy(x_train),
        y_train=torch.from_numpy(y_train),
        x_val=None,
        y_val=None,
        x_test=torch.from_numpy(x_test),
        y_test=torch.from_numpy(y_test),
        n_classes=None,
        task="regression",
        description=(
            f"adding problem (Le et al. 2015 form), T={seq_len}, seed {seed}; "
            f"{n_train} train / {n_test} test"
        ),
    )


def copy_sequences(n: int, seq_len: int, rng: np.random.Generator) -> tuple:
    """n copy-memory sequences with delay T = seq_len, each T + 20 steps long.

    Returns:
        (tokens, y): int64 arrays of shape (n, T + 20). tokens: 10 symbols drawn uniformly
        from 1..8, T - 1 blanks (0), the delimiter (9), 10 blanks. y: blank everywhere but
        the last 10 steps, which hold the 10 symbols.
    """
    symbols = rng.integers(1, N_SYMBOLS + 1, size=(n, N_COPY))
    tokens = np.full((n, seq_len + 2 * N_COPY), BLANK, dtype=np.int64)
    tokens[:, :N_COPY] = symbols
    tokens[:, N_COPY + seq_len - 1] = DELIMITER
    y = np.full_like(tokens, BLANK)
    y[:, -N_COPY:] = symbols
    return tokens, y


def load_copy_memory(
    *, seed: int, seq_len: int = 100, n_train: int = 10_000, n_test: int = 1000
) -> Dataset:
    """The copy-memory task: after a delay of T steps, output the 10 symbols seen first.

    Inputs are one-hot float32 of shape (n, T + 20, 10) over the tokens 0 blank, 1..8
    symbols, 9 delimiter; targets int64 of shape (n, T + 20), one class per step: 0 (blank)
    everywhere except the last 10 steps, which hold the symbols 1..8. n_classes = 9 (the
    delimiter is never a target). A memoryless model that outputs blank, then uniform
    guesses over the 8 symbols for the last 10 steps has cross-entropy 10 log 8 / (T + 20)
    per step, the baseline (Arjovsky et al. 2016). Split: n_train / n_test, no validation.

    Args:
        seed: seeds both streams; same seed, same sequences.
        seq_len: T, the delay (>= 1; several hundred is fine).
        n_train: training sequences.
        n_test: test sequences.
    """
    _check_sizes(seq_len, n_train, n_test, min_len=1)
    train_rng, test_rng = _streams(seed)
    eye = torch.eye(DELIMITER + 1, dtype=torch.float32)
    tensors = {}
    for split, n, rng in (("train", n_train, train_rng), ("test", n_test, test_rng)):
        tokens, y = copy_sequences(n, seq_len, rng)
        tensors[f"x_{split}"] = eye[torch.from_numpy(tokens)]  # (n, T + 20, 10)
        tensors[f"y_{split}"] = torch.from_numpy(y)
    return Dataset(
        name="copy_memory",
        x_val=None,
        y_val=None,
        n_classes=N_SYMBOLS + 1,
        task="classification",
        description=(
            f"copy memory (Arjovsky et al. 2016), T={seq_len}, {seq_len + 2 * N_COPY} steps, "
            f"seed {seed}; {n_train} train / {n_test} test"
        ),
        **tensors,
    )


def copy_memory_baseline(seq_len: int) -> float:
    """Cross-entropy per step of the memoryless strategy: 10 log 8 / (T + 20)."""
    return N_COPY * float(np.log(N_SYMBOLS)) / (seq_len + 2 * N_COPY)
