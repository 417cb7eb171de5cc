"""`Dataset`: the tensors of one task and its train / validation / test split, plus the
seeded stratified split that the synthetic and digits datasets share."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

TASKS = ("classification", "regression")


@dataclass(frozen=True, repr=False)
class Dataset:
    """One dataset, already split, as float32 inputs and targets on the CPU.

    Inputs are float32: array of shape (n, n_features) for flat data, (n, 1, 28, 28) for
    unflattened images, (n, T, n_features) for sequences. Targets are int64 class indices of
    shape (n,) (or (n, T) for a per-time-step task such as copy_memory) for classification,
    and float32 of shape (n, 1) for regression, so that they match a model output of shape
    (n, n_outputs) under a mean-squared error.

    Binary tasks (circles, blobs) keep ``n_classes=2``: a model gives two logits and is
    trained with cross-entropy; one sigmoid output with BCE can use ``y.float()``.

    Attributes:
        name: the name given to `load_dataset`.
        x_train, y_train: training inputs and targets.
        x_val, y_val: validation inputs and targets, or None where the split has none.
        x_test, y_test: test inputs and targets.
        n_classes: number of classes, or None for regression.
        task: "classification" or "regression".
        description: one line: the source and the split.
    """

    name: str
    x_train: Tensor
    y_train: Tensor
    x_val: Tensor | None
    y_val: Tensor | None
    x_test: Tensor
    y_test: Tensor
    n_classes: int | None
    task: str
    description: str

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task={self.task!r} is not one of: {', '.join(TASKS)}")
        if (self.task == "regression") != (self.n_classes is None):
            raise ValueError(
                f"n_classes={self.n_classes!r} with task={self.task!r}: regression has "
                "n_classes=None, classification an int"
            )
        if (self.x_val is None) != (self.y_val is None):
            raise ValueError("x_val and y_val must both be tensors or both be None")
        for split in ("train", "val", "test"):
            self._check_split(split)

    def _check_split(self, split: str) -> None:
        x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
        if x is None:
            return
        target_dtype = torch.int64 if self.task == "classification" else torch.float32
        if x.dtype != torch.float32 or y.dtype != target_dtype:
            raise TypeError(
                f"{self.name} {split}: inputs are {x.dtype} and targets {y.dtype}; a "
                f"{self.task} dataset needs torch.float32 inputs and {target_dtype} targets"
            )
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"{self.name} {split}: {x.shape[0]} inputs but {y.shape[0]} targets")

    @property
    def seq_len(self) -> int | None:
        """Number of time steps T for sequence data (inputs (n, T, C)), else None."""
        return self.x_train.shape[1] if self.x_train.ndim == 3 else None

    @property
    def n_features(self) -> int:
        """Inputs per time step for sequences (the last dim), else all inputs of one sample
        (784 for MNIST, flattened or not)."""
        if self.seq_len is not None:
            return self.x_train.shape[-1]
        return math.prod(self.x_train.shape[1:])

    @property
    def n_outputs(self) -> int:
        """Outputs a model needs: n_classes (2 for the binary tasks), or 1 for regression."""
        return 1 if self.n_classes is None else self.n_classes

    @property
    def per_step_targets(self) -> bool:
        """True when every time step has a target (y of shape (n, T)), as in copy_memory."""
        return self.task == "classification" and self.y_train.ndim == 2

    def __repr__(self) -> str:
        kind = self.task if self.n_classes is None else f"{self.n_classes} classes"
        n_val = 0 if self.x_val is None else len(self.x_val)
        return (
            f"Dataset({self.name!r}, {kind}, "
            f"train/val/test={len(self.x_train)}/{n_val}/{len(self.x_test)}, "
            f"x={tuple(self.x_train.shape[1:])}, y={tuple(self.y_train.shape[1:])})"
        )


def stratified_split(
    y: np.ndarray, n_take: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices 0..n-1 into (rest, taken) with ``n_take`` taken, classes in proportion.

    Each class gives floor(n_take * n_c / n) samples; the remaining ones go to the classes
    with the largest fractional parts (Hamilton's largest-remainder method), so the total is
    exact. Both index arrays come out shuffled.

    Args:
        y: int array of shape (n,), class labels.
        n_take: number of samples to take, 0 < n_take < n.
        rng: the generator that picks the samples and shuffles.

    Returns:
        (rest, taken): int arrays of shape (n - n_take,) and (n_take,).
    """
    if not 0 < n_take < len(y):
        raise ValueError(f"cannot take {n_take} of {len(y)} samples; need 0 < n_take < n")
    classes, counts = np.unique(y, return_counts=True)
    quota = n_take * counts / len(y)
    take = np.floor(quota).astype(np.int64)
    by_remainder = np.argsort(-(quota - take), kind="stable")
    take[by_remainder[: n_take - take.sum()]] += 1
    taken = [rng.permutation(np.flatnonzero(y == c))[:k] for c, k in zip(classes, take)]
    taken = np.concatenate(taken)
    rest = np.setdiff1d(np.arange(len(y)), taken)
    return rng.permutation(rest), rng.permutation(taken)


def classification(
    name: str, description: str, n_classes: int, splits: dict[str, tuple | None]
) -> Dataset:
    """A classification Dataset from numpy arrays: splits maps "train"/"val"/"test" to
    (x, y) or None; x becomes float32 and y int64."""
    tensors = {}
    for split, pair in splits.items():
        x, y = pair if pair is not None else (None, None)
        tensors[f"x_{split}"] = None if x is None else torch.from_numpy(np.asarray(x, np.float32))
        tensors[f"y_{split}"] = None if y is None else torch.from_numpy(np.asarray(y, np.int64))
    return Dataset(
        name=name, n_classes=n_classes, task="classification", description=description, **tensors
    )
