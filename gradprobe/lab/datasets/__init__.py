"""Datasets of the lab, by name: `load_dataset("digits", seed=0)` -> `Dataset`.

| name        | data                                          | split                   |
|-------------|-----------------------------------------------|-------------------------|
| circles     | sklearn make_circles, the ReLU tutorial's     | 500 train / 500 test    |
| blobs       | two Gaussian classes, the chain demo's        | 800 / 200, stratified   |
| digits      | sklearn 8x8 digits, embedded                  | 1197 / 300 / 300        |
| mnist       | IDX, Nielsen's pickle or Kaggle CSV on disk   | 50k / 10k / 10k         |
| adding      | adding problem, T steps, regression           | 10000 / 1000            |
| copy_memory | copy memory, T + 20 steps, per-step classes   | 10000 / 1000            |

Each loader's docstring gives the details; the parameters of `load_dataset` beyond ``seed``
are the loader's keyword arguments.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from gradprobe.lab.datasets.base import Dataset
from gradprobe.lab.datasets.digits import load_digits
from gradprobe.lab.datasets.mnist import load_mnist
from gradprobe.lab.datasets.sequences import load_adding, load_copy_memory
from gradprobe.lab.datasets.synthetic import load_blobs, load_circles

LOADERS: dict[str, Callable[..., Dataset]] = {
    "circles": load_circles,
    "blobs": load_blobs,
    "digits": load_digits,
    "mnist": load_mnist,
    "adding": load_adding,
    "copy_memory": load_copy_memory,
}
DATASETS: tuple[str, ...] = tuple(LOADERS)


def dataset_params(name: str) -> dict[str, object]:
    """The parameters a dataset takes besides seed, with their defaults."""
    loader = _loader(name)
    signature = inspect.signature(loader)
    return {p: v.default for p, v in signature.parameters.items() if p != "seed"}


def _loader(name: str) -> Callable[..., Dataset]:
    if name not in LOADERS:
        raise ValueError(f"dataset={name!r} is not one of: {', '.join(DATASETS)}")
    return LOADERS[name]


def load_dataset(name: str, *, seed: int, **params) -> Dataset:
    """Load a dataset by name.

    Args:
        name: one of DATASETS.
        seed: seeds every random choice of the data (noise, split); same seed, same tensors.
        **params: the dataset's own options (see `dataset_params`), e.g. ``seq_len=200``.

    Raises:
        ValueError: unknown name, or a parameter the dataset does not take (the message lists
            the allowed ones).
    """
    loader = _loader(name)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed={seed!r} is not an int; every dataset needs an int seed")
    allowed = dataset_params(name)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(
            f"{name} does not take {', '.join(unknown)}; its parameters are: "
            f"{', '.join(f'{k}={v!r}' for k, v in allowed.items())}"
        )
    return loader(seed=seed, **params)


__all__ = ["DATASETS", "Dataset", "dataset_params", "load_dataset"]
