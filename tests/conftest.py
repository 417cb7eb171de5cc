"""Shared test setup: point GRADPROBE_MNIST at the project's shared copy of MNIST.

The shared copy (../shared/data/mnist from the project root) is used only by the tests; the
library itself looks at path=, $GRADPROBE_MNIST and its default directory. A value already in
the environment is kept.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"

if not os.environ.get("GRADPROBE_MNIST") and SHARED_MNIST.is_dir():
    os.environ["GRADPROBE_MNIST"] = str(SHARED_MNIST)


@pytest.fixture
def mnist_source():
    """The real MNIST files (a `MnistSource`); skips the test, saying why, when absent.

    Mark a test that needs them with ``@pytest.mark.usefixtures("mnist_source")``.
    """
    from gradprobe.lab.datasets.mnist import find_mnist

    try:
        return find_mnist()
    except FileNotFoundError as err:
        pytest.skip(
            f"real MNIST files not found (set GRADPROBE_MNIST or put them in {SHARED_MNIST}): "
            + " ".join(str(err).split())
        )
