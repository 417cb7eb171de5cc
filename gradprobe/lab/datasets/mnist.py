"""`mnist`: find the MNIST files on disk, read whichever layout is there, split as Nielsen does.

Where it looks: ``path=`` when given (and nowhere else: an explicit path is a request, not a
hint), otherwise the environment variable GRADPROBE_MNIST, then `fetch.DEFAULT_DIR` (where
``gradprobe data fetch mnist`` saves). A place may be a directory or a file. In a directory
the four IDX files win over ``mnist.pkl.gz``, which wins over Kaggle's ``train.csv``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gradprobe.lab.datasets import fetch
from gradprobe.lab.datasets.base import Dataset, classification
from gradprobe.lab.datasets.mnist_formats import (
    N_PIXELS,
    SIDE,
    MnistFormatError,
    read_csv,
    read_idx_pair,
    read_pickle,
)

ENV_VAR = "GRADPROBE_MNIST"
IDX_STEMS = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
PICKLE_NAME = "mnist.pkl.gz"  # Nielsen, neural-networks-and-deep-learning/data/
CSV_NAME = "train.csv"  # Kaggle "Digit Recognizer"
# Nielsen's split of the 60,000 training images: the last 10,000 are the validation set.
NIELSEN_N_VAL = 10_000
# A CSV has no separate test set: its last 10,000 rows (t10k's size) are held out as test.
CSV_N_TEST = 10_000
PIXEL_SCALE = 256.0  # k / 256 in [0, 1), the values of Nielsen's mnist.pkl.gz exactly
EXPECTED = (
    f"the four IDX files {', '.join(s + '[.gz]' for s in IDX_STEMS)}; "
    f"or Nielsen's {PICKLE_NAME}; or Kaggle's {CSV_NAME}"
)


@dataclass(frozen=True)
class MnistSource:
    """The files found: layout "idx" (four files), "pickle" or "csv" (one file)."""

    layout: str
    files: tuple[Path, ...]

    def __repr__(self) -> str:
        return f"MnistSource({self.layout!r}, {', '.join(str(f) for f in self.files)})"


def _idx_in(directory: Path) -> tuple[MnistSource | None, str]:
    found = []
    for stem in IDX_STEMS:
        options = [directory / (stem + ".gz"), directory / stem]
        found.append(next((f for f in options if f.is_file()), None))
    if all(found):
        return MnistSource("idx", tuple(found)), ""
    missing = [s for s, f in zip(IDX_STEMS, found) if f is None]
    partial = len(missing) < len(IDX_STEMS)
    return None, f"lacks {', '.join(missing)}" if partial else "holds none of the files"


def _source_in(place: Path) -> tuple[MnistSource | None, str]:
    """The MNIST files at place, or None and why not."""
    if place.is_file():
        name = place.name
        if name.endswith((".pkl.gz", ".pkl")):
            return MnistSource("pickle", (place,)), ""
        if name.endswith((".csv", ".csv.gz")):
            return MnistSource("csv", (place,)), ""
        if name.startswith(IDX_STEMS):
            return _idx_in(place.parent)
        return None, f"is a file of unknown layout (expected {EXPECTED})"
    if not place.is_dir():
        return None, "does not exist"
    source, why = _idx_in(place)
    if source is None and (place / PICKLE_NAME).is_file():
        source = MnistSource("pickle", (place / PICKLE_NAME,))
    if source is None and (place / CSV_NAME).is_file():
        source = MnistSource("csv", (place / CSV_NAME,))
    return source, why


def find_mnist(path: str | os.PathLike | None = None) -> MnistSource:
    """The MNIST files to read: at path if given, else at $GRADPROBE_MNIST, else DEFAULT_DIR.

    Raises:
        FileNotFoundError: nothing usable anywhere; the message lists every place looked at,
            the file names expected and how to get them.
    """
    if path is not None:
        places = [("path=", Path(path))]
    else:
        places = [(f"${ENV_VAR}", Path(os.environ[ENV_VAR]))] if os.environ.get(ENV_VAR) else []
        places.append(("default directory", Path(fetch.DEFAULT_DIR)))
    looked = []
    for label, place in places:
        source, why = _source_in(place.expanduser())
        if source is not None:
            return source
        looked.append(f"  {label} {place}: {why}")
    if path is None and not os.environ.get(ENV_VAR):
        looked.insert(0, f"  ${ENV_VAR}: not set")
    raise FileNotFoundError(
        "MNIST not found. Looked at:\n" + "\n".join(looked) + f"\nExpected {EXPECTED}.\n"
        f"Fetch them with `gradprobe data fetch mnist` (into {fetch.DEFAULT_DIR}), or set "
        f"{ENV_VAR} to a directory holding them, or pass path= (a directory or a file)."
    )


def _pools(source: MnistSource, n_test: int | None) -> tuple:
    """(x_pool, y_pool, x_test, y_test): the training pool (split later) and the test set."""
    if n_test is not None and source.layout != "csv":
        raise ValueError(
            f"n_test={n_test} applies only to a CSV source; {source.layout} files have "
            "their own test set"
        )
    if source.layout == "idx":
        return (*read_idx_pair(*source.files[:2]), *read_idx_pair(*source.files[2:]))
    if source.layout == "pickle":
        (x_a, y_a), (x_b, y_b), (x_test, y_test) = read_pickle(source.files[0])
        return np.concatenate([x_a, x_b]), np.concatenate([y_a, y_b]), x_test, y_test
    x, y = read_csv(source.files[0])
    n_test = CSV_N_TEST if n_test is None else n_test
    if not 0 < n_test < len(x):
        raise ValueError(
            f"n_test={n_test}: {source.files[0]} has {len(x)} rows; need 0 < n_test < rows"
        )
    return x[:-n_test], y[:-n_test], x[-n_test:], y[-n_test:]


def _pixels(images: np.ndarray, flatten: bool) -> np.ndarray:
    """float32 images in [0, 1): (n, 784) when flatten, else (n, 1, 28, 28)."""
    if images.dtype != np.float32:  # 1/256 is exact in float32: same values as k / 256
        images = np.multiply(images, np.float32(1.0 / PIXEL_SCALE), dtype=np.float32)
    shape = (N_PIXELS,) if flatten else (1, SIDE, SIDE)
    return images.reshape(len(images), *shape)


def _check_split(n_pool: int, n_val: int, limit_train: int | None) -> None:
    if not 0 <= n_val < n_pool:
        raise ValueError(
            f"n_val={n_val}: the training set has {n_pool} images; need 0 <= n_val < {n_pool}"
        )
    if limit_train is not None and not 1 <= limit_train <= n_pool - n_val:
        raise ValueError(
            f"limit_train={limit_train}: {n_pool - n_val} training images remain after the "
            f"validation split; need 1 <= limit_train <= {n_pool - n_val} or None"
        )


def load_mnist(
    *,
    seed: int,
    path: str | os.PathLike | None = None,
    flatten: bool = True,
    limit_train: int | None = None,
    n_val: int = NIELSEN_N_VAL,
    n_test: int | None = None,
) -> Dataset:
    """MNIST in Nielsen's split: 50,000 train / 10,000 validation / 10,000 test.

    Train is the first 60,000 - n_val images of the training set, validation the last n_val,
    test the t10k set, all in file order (the seed does not change the data; the trainer
    shuffles). From a Kaggle train.csv, which has no test labels, the last n_test rows
    (10,000) are the test set and the split above applies to the rows before them.
    Pixels are float32 k / 256 in [0, 1), exactly the values of Nielsen's mnist.pkl.gz.

    Args:
        seed: the experiment's seed (recorded; it does not change these data).
        path: a directory or a file (see module docstring); None to search.
        flatten: inputs of shape (n, 784) if True, else (n, 1, 28, 28).
        limit_train: keep only the first k training images (quick runs), or None for all.
        n_val: validation images taken from the end of the training set; 0 for none.
        n_test: for a CSV source only, rows held out as the test set (default 10,000).

    Raises:
        FileNotFoundError: no MNIST files found (see `find_mnist`).
        MnistFormatError: a file is truncated, corrupted or not in its layout.
    """
    source = find_mnist(path)
    x_pool, y_pool, x_test, y_test = _pools(source, n_test)
    _check_split(len(x_pool), n_val, limit_train)
    n_train = len(x_pool) - n_val if limit_train is None else limit_train
    splits = {
        "train": (_pixels(x_pool[:n_train], flatten), y_pool[:n_train]),
        "val": (_pixels(x_pool[-n_val:], flatten), y_pool[-n_val:]) if n_val else None,
        "test": (_pixels(x_test, flatten), y_test),
    }
    description = (
        f"MNIST ({source.layout}: {source.files[0].parent}); first {n_train} train / last "
        f"{n_val} of the training set val / {len(x_test)} test; pixels / 256"
    )
    return classification("mnist", description, 10, splits)


__all__ = ["MnistFormatError", "MnistSource", "find_mnist", "load_mnist"]
