"""MNIST: the real files (skipped when absent), small IDX / pickle / CSV files written here,
broken files with clear errors, the search order, and fetch_mnist against a local server."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import pickle
import socket
import struct
import threading
import time

import numpy as np
import pytest
import torch

from gradprobe.lab.datasets import fetch, load_dataset
from gradprobe.lab.datasets.mnist import find_mnist
from gradprobe.lab.datasets.mnist_formats import MnistFormatError

STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
TEST_STEMS = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
# The real files, from tests/conftest.py: skipped with the places searched when absent.
requires_mnist = pytest.mark.usefixtures("mnist_source")
# Class counts of the 60,000 training and 10,000 test images (LeCun et al.'s files).
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def fake_mnist(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n)


def write_idx(directory, n_train=40, n_test=12, gz=True, seed=0) -> dict:
    """Four IDX files in directory; returns the arrays written."""
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {"train": fake_mnist(n_train, seed), "test": fake_mnist(n_test, seed + 1)}
    for (images, labels), stems in ((arrays["train"], STEMS), (arrays["test"], TEST_STEMS)):
        for stem, data in zip(stems, (idx_bytes(images, 2051), idx_bytes(labels, 2049))):
            path = directory / (stem + (".gz" if gz else ""))
            path.write_bytes(gzip.compress(data) if gz else data)
    return arrays


@pytest.fixture
def no_mnist(tmp_path, monkeypatch):
    """No GRADPROBE_MNIST and an empty default directory."""
    monkeypatch.delenv("GRADPROBE_MNIST", raising=False)
    monkeypatch.setattr(fetch, "DEFAULT_DIR", tmp_path / "cache" / "mnist")
    return tmp_path


@requires_mnist
def test_real_mnist_nielsen_split():
    start = time.perf_counter()
    data = load_dataset("mnist", seed=0)
    seconds = time.perf_counter() - start
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (50_000, 10_000, 10_000)
    assert data.x_train.shape == (50_000, 784) and data.x_train.dtype == torch.float32
    assert data.y_train[0] == 5 and data.y_test[0] == 7
    assert torch.cat([data.y_train, data.y_val]).bincount().tolist() == TRAIN_COUNTS
    assert data.y_test.bincount().tolist() == TEST_COUNTS
    x = data.x_test
    assert x.min() == 0.0 and x.max() == 255 / 256
    assert torch.equal(x * 256, (x * 256).round())  # every pixel is k / 256
    assert seconds < 5.0, f"loading MNIST took {seconds:.2f} s"


@requires_mnist
def test_real_mnist_images_and_limit():
    data = load_dataset("mnist", seed=0, flatten=False, limit_train=100)
    assert data.x_train.shape == (100, 1, 28, 28) and data.n_features == 784
    assert data.x_test.shape == (10_000, 1, 28, 28)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_files_load_in_nielsen_layout(tmp_path, gz):
    arrays = write_idx(tmp_path / "m", gz=gz)
    data = load_dataset("mnist", seed=0, path=tmp_path / "m", n_val=10)
    images, labels = arrays["train"]
    np.testing.assert_array_equal(data.x_train.numpy(), images[:30].reshape(30, 784) / 256)
    np.testing.assert_array_equal(data.y_val.numpy(), labels[30:])
    np.testing.assert_array_equal(data.x_test.numpy() * 256, arrays["test"][0].reshape(12, 784))
    assert data.y_train.dtype == torch.int64 and data.n_classes == 10
    assert load_dataset("mnist", seed=0, path=tmp_path / "m", n_val=0).x_val is None
    limited = load_dataset("mnist", seed=0, path=tmp_path / "m", n_val=10, limit_train=7)
    assert torch.equal(limited.x_train, data.x_train[:7])


class Python2Pickler(pickle._Pickler):
    """Writes str and bytes as Python 2 str (BINSTRING), as Nielsen's mnist.pkl.gz has them."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj: bytes) -> None:
        size = len(obj)
        if size < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([size]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", size) + obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = lambda self, obj: self.save_py2_str(obj.encode("latin1"))


def python2_pickle(content) -> bytes:
    out = io.BytesIO()
    Python2Pickler(out, protocol=2).dump(content)
    # numpy 1.x, which wrote the file, lived in numpy.core
    return out.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


@pytest.mark.parametrize("writer", [python2_pickle, pickle.dumps])
def test_pickle_layout_gives_the_same_split(tmp_path, writer):
    images, labels = fake_mnist(50, seed=2)
    x = (images.reshape(50, 784) / 256).astype(np.float32)
    content = ((x[:30], labels[:30]), (x[30:40], labels[30:40]), (x[40:], labels[40:]))
    path = tmp_path / "mnist.pkl.gz"
    path.write_bytes(gzip.compress(writer(content)))
    for where in (tmp_path, path):
        data = load_dataset("mnist", seed=0, path=where, n_val=10)
        np.testing.assert_array_equal(data.x_train.numpy(), x[:30])
        np.testing.assert_array_equal(data.y_val.numpy(), labels[30:40])
        np.testing.assert_array_equal(data.x_test.numpy(), x[40:])


def test_pickle_that_would_run_code_is_refused(tmp_path):
    path = tmp_path / "mnist.pkl.gz"
    path.write_bytes(gzip.compress(pickle.dumps((print, 1, 2))))
    with pytest.raises(MnistFormatError, match=r"mnist.pkl.gz is not a readable MNIST pickle"):
        load_dataset("mnist", seed=0, path=path)


def write_csv(path, images, labels, columns=785):
    header = ",".join(["label"] + [f"pixel{i}" for i in range(784)][: columns - 1])
    rows = [
        ",".join(map(str, [lab, *img.ravel()[: columns - 1]])) for img, lab in zip(images, labels)
    ]
    path.write_text("\n".join([header, *rows]) + "\n")


def test_kaggle_csv_split(tmp_path):
    images, labels = fake_mnist(30, seed=3)
    write_csv(tmp_path / "train.csv", images, labels)
    data = load_dataset("mnist", seed=0, path=tmp_path, n_val=5, n_test=8)
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (17, 5, 8)
    np.testing.assert_array_equal(data.x_test.numpy() * 256, images[-8:].reshape(8, 784))
    np.testing.assert_array_equal(data.y_train.numpy(), labels[:17])
    with pytest.raises(ValueError, match=r"n_test=8 applies only to a CSV source"):
        write_idx(tmp_path / "idx")
        load_dataset("mnist", seed=0, path=tmp_path / "idx", n_val=5, n_test=8)


def test_csv_with_wrong_column_count(tmp_path):
    images, labels = fake_mnist(3, seed=0)
    write_csv(tmp_path / "test.csv", images, labels, columns=784)
    with pytest.raises(
        MnistFormatError, match=r"test.csv: its header has 784 columns; expected 785"
    ):
        load_dataset("mnist", seed=0, path=tmp_path / "test.csv")
    write_csv(tmp_path / "train.csv", images, labels)
    with (tmp_path / "train.csv").open("a") as out:
        out.write("1,2,3\n")
    with pytest.raises(MnistFormatError, match=r"train.csv: row 4 has 3 columns; expected 785"):
        load_dataset("mnist", seed=0, path=tmp_path / "train.csv", n_test=1, n_val=1)


def test_truncated_idx(tmp_path):
    write_idx(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    expected = 16 + 40 * 784
    with pytest.raises(
        MnistFormatError,
        match=rf"train-images-idx3-ubyte declares dims \(40, 28, 28\), which need {expected} "
        rf"bytes, but has {expected - 100} bytes \(truncated\)",
    ):
        load_dataset("mnist", seed=0, path=tmp_path, n_val=10)


def test_wrong_magic_and_bad_labels(tmp_path):
    arrays = write_idx(tmp_path, gz=False)
    images_path = tmp_path / "t10k-images-idx3-ubyte"
    labels_path = tmp_path / "t10k-labels-idx1-ubyte"
    images_path.write_bytes(labels_path.read_bytes())
    with pytest.raises(MnistFormatError, match=r"magic number 2049; expected 2051 \(images\)"):
        load_dataset("mnist", seed=0, path=tmp_path, n_val=10)
    images_path.write_bytes(idx_bytes(arrays["test"][0], 2051))
    labels_path.write_bytes(idx_bytes(np.array([3] * 11 + [10]), 2049))
    with pytest.raises(MnistFormatError, match=r"labels from 3 to 10; MNIST labels are 0..9"):
        load_dataset("mnist", seed=0, path=tmp_path, n_val=10)
    labels_path.write_bytes(idx_bytes(np.zeros(11), 2049))
    with pytest.raises(MnistFormatError, match=r"holds 12 images but .* holds 11 labels"):
        load_dataset("mnist", seed=0, path=tmp_path, n_val=10)


def test_corrupted_and_truncated_gzip(tmp_path):
    write_idx(tmp_path)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    good = path.read_bytes()
    for broken in (b"not gzip at all", good[: len(good) // 2]):
        path.write_bytes(broken)
        with pytest.raises(
            MnistFormatError, match=r"train-labels-idx1-ubyte.gz is not a valid gzip"
        ):
            load_dataset("mnist", seed=0, path=tmp_path, n_val=10)


def test_missing_files_list_every_place(no_mnist, monkeypatch):
    with pytest.raises(FileNotFoundError) as caught:
        load_dataset("mnist", seed=0)
    message = str(caught.value)
    assert "$GRADPROBE_MNIST: not set" in message
    assert f"default directory {no_mnist / 'cache' / 'mnist'}: does not exist" in message
    assert "train-images-idx3-ubyte[.gz]" in message and "mnist.pkl.gz" in message
    assert "gradprobe data fetch mnist" in message and "path=" in message
    partial = no_mnist / "partial"
    write_idx(partial)
    (partial / "t10k-labels-idx1-ubyte.gz").unlink()
    monkeypatch.setenv("GRADPROBE_MNIST", str(partial))
    with pytest.raises(FileNotFoundError, match=r"\$GRADPROBE_MNIST .*partial: lacks t10k-labels"):
        load_dataset("mnist", seed=0)
    with pytest.raises(FileNotFoundError, match=r"path= .*nowhere: does not exist"):
        load_dataset("mnist", seed=0, path=no_mnist / "nowhere")


def test_search_order(no_mnist, monkeypatch):
    write_idx(fetch.DEFAULT_DIR, seed=10)
    assert find_mnist().files[0].parent == fetch.DEFAULT_DIR
    write_idx(no_mnist / "env", seed=20)
    monkeypatch.setenv("GRADPROBE_MNIST", str(no_mnist / "env"))
    assert find_mnist().files[0].parent == no_mnist / "env"
    write_idx(no_mnist / "explicit", seed=30)
    assert find_mnist(no_mnist / "explicit").layout == "idx"
    assert find_mnist(no_mnist / "explicit" / "t10k-images-idx3-ubyte.gz").files[0].parent == (
        no_mnist / "explicit"
    )


# fetch_mnist, against a server on 127.0.0.1 (no network)


@pytest.fixture
def mirror(tmp_path):
    """A local HTTP server over tmp_path/served; yields (base url, served dir, md5 table)."""
    served = tmp_path / "served"
    served.mkdir()
    checksums = {}
    for i, name in enumerate(("a-idx1-ubyte.gz", "b-idx1-ubyte.gz")):
        content = bytes(range(i, 200 + i))
        (served / name).write_bytes(gzip.compress(content))
        checksums[name] = hashlib.md5(content).hexdigest()
    quiet = type(
        "Quiet", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda *args: None}
    )
    handler = functools.partial(quiet, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", served, checksums
    server.shutdown()
    server.server_close()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def test_fetch_downloads_verifies_and_skips(mirror, tmp_path):
    url, served, checksums = mirror
    dest = tmp_path / "dest"
    lines = []
    got = fetch.fetch_mnist(
        dest, mirrors=[closed_port_url(), url], checksums=checksums, log=lines.append
    )
    assert got == dest
    for name in checksums:
        assert (dest / name).read_bytes() == (served / name).read_bytes()
    assert lines == [f"{name}: downloaded from {url}{name}, md5 ok" for name in checksums]
    assert sorted(p.name for p in dest.iterdir()) == sorted(checksums)  # no temp files left
    lines.clear()
    fetch.fetch_mnist(dest, mirrors=[closed_port_url()], checksums=checksums, log=lines.append)
    assert all("already in" in line for line in lines)


def test_fetch_checksum_mismatch(mirror, tmp_path):
    url, _, checksums = mirror
    wrong = dict.fromkeys(checksums, "0" * 32)
    with pytest.raises(
        fetch.ChecksumError, match=r"a-idx1-ubyte.gz: wrong content from .*expected 0{32}"
    ):
        fetch.fetch_mnist(tmp_path / "dest", mirrors=[url], checksums=wrong)
    assert list((tmp_path / "dest").iterdir()) == []


def test_fetch_unreachable(tmp_path):
    dead = closed_port_url()
    with pytest.raises(
        ConnectionError, match=rf"could not download a.gz; tried {dead}a.gz"
    ) as caught:
        fetch.fetch_mnist(tmp_path, mirrors=[dead], checksums={"a.gz": "0" * 32}, timeout=5)
    assert isinstance(caught.value, fetch.FetchError) and "GRADPROBE_MNIST" in str(caught.value)


def test_fetch_table_is_the_shared_readme():
    assert fetch.MNIST_MD5["train-images-idx3-ubyte.gz"] == "6bbc9ace898e44ae57da46a324031adb"
    assert sorted(fetch.MNIST_MD5) == sorted(s + ".gz" for s in STEMS + TEST_STEMS)
