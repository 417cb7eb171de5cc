"""`fetch_mnist`: download the four MNIST IDX files, checked against known md5 sums.

Called by ``gradprobe data fetch mnist``; never at import or test time.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import tempfile
import urllib.request
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

# Where fetch_mnist saves and load_dataset("mnist") looks last ($XDG_CACHE_HOME convention).
DEFAULT_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gradprobe" / "mnist"

# md5 of the UNCOMPRESSED files, from the table in the project's shared/data/README.md
# (/work/shared/data/README.md), checked there against the files in shared/data/mnist.
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte.gz": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte.gz": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte.gz": "27ae3e4e09519cfbb04c329615203637",
}
# Public copies of the original files: torchvision's mirror, then TensorFlow's cvdf mirror.
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
TIMEOUT_S = 30.0  # per request; a mirror slower than this is treated as unreachable


class FetchError(ConnectionError):
    """No mirror could deliver a file (offline, unreachable, HTTP error)."""


class ChecksumError(RuntimeError):
    """A file arrived, but its uncompressed md5 is not the expected one, on every mirror."""


def uncompressed_md5(data: bytes) -> str | None:
    """md5 hex digest of the gunzipped data, or None when data is not valid gzip."""
    try:
        return hashlib.md5(gzip.decompress(data)).hexdigest()
    except (OSError, EOFError, zlib.error):
        return None


def _is_valid(path: Path, md5: str) -> bool:
    return path.is_file() and uncompressed_md5(path.read_bytes()) == md5


def _write_atomic(path: Path, data: bytes) -> None:
    # A temp file in the same directory, then a rename: readers never see half a file.
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _download(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def _manual_hint(dest: Path, names: Sequence[str]) -> str:
    return (
        f"Download {', '.join(names)} by hand (any MNIST mirror) into {dest}, or put them "
        "anywhere and set GRADPROBE_MNIST to that directory, or pass path= to load_dataset"
    )


def _fetch_one(name: str, md5: str, dest: Path, mirrors: Sequence[str], timeout: float) -> str:
    """Download one file from the first mirror that gives the right content; returns its url."""
    failures, mismatches = [], []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + name
        try:
            data = _download(url, timeout)
        except (OSError, ValueError, http.client.HTTPException) as err:  # URLError is an OSError
            failures.append(f"{url} ({getattr(err, 'reason', err)})")
            continue
        got = uncompressed_md5(data)
        if got == md5:
            _write_atomic(dest / name, data)
            return url
        mismatches.append(f"{url} (md5 {got or 'n/a: not gzip'}, expected {md5})")
    hint = _manual_hint(dest, [name])
    if mismatches:
        raise ChecksumError(
            f"{name}: wrong content from {'; '.join(mismatches + failures)}. {hint}"
        )
    raise FetchError(f"could not download {name}; tried {'; '.join(failures)}. {hint}")


def fetch_mnist(
    dest: Path | None = None,
    *,
    mirrors: Sequence[str] = MIRRORS,
    timeout: float = TIMEOUT_S,
    checksums: Mapping[str, str] = MNIST_MD5,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Download the MNIST files into dest, skipping those already there and valid.

    Each file is tried on each mirror in turn; it is written (temp file + rename) only when
    the md5 of its uncompressed content matches ``checksums``.

    Args:
        dest: directory to write to; DEFAULT_DIR (where load_dataset looks) by default.
        mirrors: base URLs, each followed by the file name.
        timeout: seconds per request.
        checksums: file name -> md5 of the uncompressed file; its keys are what is fetched.
        log: called with one line per file (e.g. ``print``), or None for silence.

    Returns:
        The directory holding the files.

    Raises:
        FetchError: a file could not be downloaded from any mirror (offline?).
        ChecksumError: a mirror served a file whose md5 did not match.
    """
    dest = Path(dest) if dest is not None else DEFAULT_DIR
    dest.mkdir(parents=True, exist_ok=True)
    say = log or (lambda line: None)
    for name, md5 in checksums.items():
        if _is_valid(dest / name, md5):
            say(f"{name}: already in {dest}, md5 ok")
            continue
        url = _fetch_one(name, md5, dest, mirrors, timeout)
        say(f"{name}: downloaded from {url}, md5 ok")
    return dest
