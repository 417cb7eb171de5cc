"""Readers for the three MNIST file layouts, each strict about what it accepts: IDX (gzipped
or not), Nielsen's ``mnist.pkl.gz`` and Kaggle's ``train.csv``. They return numpy arrays:
images uint8 (n, 28, 28) or float32 (n, 784), labels int64 (n,)."""

from __future__ import annotations

import gzip
import io
import pickle
import zlib
from pathlib import Path

import numpy as np

# IDX format (LeCun et al., http://yann.lecun.com/exdb/mnist/): a big-endian int32 magic
# 0x0000TTDD (TT = 0x08 unsigned byte, DD = number of dims), DD big-endian uint32 sizes.
IMAGES_MAGIC = 2051  # 0x00000803: ubyte, 3 dims (n, rows, cols)
LABELS_MAGIC = 2049  # 0x00000801: ubyte, 1 dim (n,)
SIDE = 28  # MNIST images are 28x28 pixels
N_PIXELS = SIDE * SIDE
N_LABELS = 10
CSV_COLUMNS = 1 + N_PIXELS  # Kaggle "Digit Recognizer": label, pixel0..pixel783


class MnistFormatError(ValueError):
    """An MNIST file exists but is not what its layout requires."""


def read_bytes(path: Path) -> bytes:
    """The file's content, gunzipped when its name ends in .gz; errors name the file."""
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        return gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        raise MnistFormatError(
            f"{path} is not a valid gzip file ({err}); delete it and fetch it again "
            "(`gradprobe data fetch mnist`)"
        ) from err


def read_idx(path: Path, magic: int) -> np.ndarray:
    """An IDX file as a uint8 array of its declared shape.

    Args:
        path: the file, gzipped when its name ends in .gz.
        magic: IMAGES_MAGIC (shape (n, rows, cols)) or LABELS_MAGIC (shape (n,)).

    Raises:
        MnistFormatError: wrong magic number, or a byte length that does not match the
            declared dims (a truncated or padded file).
    """
    data = read_bytes(path)
    n_dims = magic & 0xFF
    header = 4 * (1 + n_dims)
    if len(data) < header:
        raise MnistFormatError(
            f"{path} has {len(data)} bytes, fewer than the {header}-byte IDX header"
        )
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise MnistFormatError(
            f"{path} has IDX magic number {found}; expected {magic} "
            f"({'images' if magic == IMAGES_MAGIC else 'labels'})"
        )
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=n_dims, offset=4))
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        raise MnistFormatError(
            f"{path} declares dims {dims}, which need {expected} bytes, but has "
            f"{len(data)} bytes{' (truncated)' if len(data) < expected else ''}"
        )
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def read_idx_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (n, 28, 28) and labels int64 (n,) from an IDX images/labels pair."""
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC).astype(np.int64)
    if images.shape[1:] != (SIDE, SIDE):
        raise MnistFormatError(
            f"{images_path} holds images of {images.shape[1]}x{images.shape[2]}; "
            f"MNIST images are {SIDE}x{SIDE}"
        )
    if len(images) != len(labels):
        raise MnistFormatError(
            f"{images_path} holds {len(images)} images but {labels_path} holds "
            f"{len(labels)} labels; they must be equal"
        )
    check_labels(labels, labels_path)
    return images, labels


def check_labels(labels: np.ndarray, path: Path) -> None:
    """Raise MnistFormatError unless every label is a digit 0..9."""
    if labels.size and (labels.min() < 0 or labels.max() >= N_LABELS):
        raise MnistFormatError(
            f"{path} holds labels from {labels.min()} to {labels.max()}; "
            f"MNIST labels are 0..{N_LABELS - 1}"
        )


class _ArraysOnly(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else, so a data file cannot run code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),  # written by numpy 1.x (Nielsen's file)
        ("numpy._core.multiarray", "_reconstruct"),  # written by numpy 2.x
        ("numpy.core.numeric", "_frombuffer"),  # protocol 5
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # bytes in protocol-2 pickles written by Python 3
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")
        return super().find_class(module, name)


def _unpickle(path: Path):
    data = read_bytes(path)
    try:
        # Nielsen's file was pickled by Python 2: its str bytes decode as latin1.
        return _ArraysOnly(io.BytesIO(data), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
        raise MnistFormatError(f"{path} is not a readable MNIST pickle: {err}") from err


def read_pickle(path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """Nielsen's mnist.pkl.gz: a tuple (training, validation, test), each (x, y) with x float32
    (n, 784) in [0, 1) and y int labels (n,). Returns the three pairs as (float32, int64)."""
    content = _unpickle(path)
    if not (isinstance(content, tuple | list) and len(content) == 3):
        raise MnistFormatError(
            f"{path} holds a {type(content).__name__}; expected the tuple "
            "(training, validation, test) of Nielsen's mnist.pkl.gz"
        )
    pairs = []
    for split, pair in zip(("training", "validation", "test"), content):
        x, y = (np.asarray(a) for a in pair)
        if x.ndim != 2 or x.shape[1] != N_PIXELS or y.shape != (len(x),):
            raise MnistFormatError(
                f"{path}: the {split} pair has shapes {x.shape} and {y.shape}; "
                f"expected (n, {N_PIXELS}) and (n,)"
            )
        check_labels(y, path)
        pairs.append((x.astype(np.float32, copy=False), y.astype(np.int64)))
    return pairs


def read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Kaggle's train.csv: a header ``label,pixel0..pixel783`` then one image per row, pixels
    0..255. Returns images uint8 (n, 28, 28) and labels int64 (n,)."""
    text = read_bytes(path).decode("ascii", errors="replace").replace("\r", "")
    header, _, body = text.partition("\n")
    rows = body.strip().split("\n") if body.strip() else []
    widths = [header.count(",") + 1] + [row.count(",") + 1 for row in rows]
    bad = next((i for i, w in enumerate(widths) if w != CSV_COLUMNS), None)
    if bad is not None:
        where = "its header" if bad == 0 else f"row {bad}"
        raise MnistFormatError(
            f"{path}: {where} has {widths[bad]} columns; expected {CSV_COLUMNS} "
            f"(label, pixel0..pixel{N_PIXELS - 1}, Kaggle's train.csv)"
        )
    try:
        values = np.fromstring(",".join(rows), dtype=np.int64, sep=",") if rows else np.zeros(0)
    except ValueError as err:
        raise MnistFormatError(f"{path} holds a value that is not an integer ({err})") from err
    table = values.reshape(len(rows), CSV_COLUMNS)
    labels, pixels = table[:, 0], table[:, 1:]
    check_labels(labels, path)
    if pixels.size and (pixels.min() < 0 or pixels.max() > 255):
        raise MnistFormatError(f"{path} holds pixels outside 0..255")
    return pixels.astype(np.uint8).reshape(-1, SIDE, SIDE), labels.astype(np.int64)
