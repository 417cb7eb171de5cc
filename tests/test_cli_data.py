"""`gradprobe data fetch`: verifies files there, refuses unknown datasets, fails cleanly offline."""

from __future__ import annotations

import shutil

import pytest
from typer.testing import CliRunner

from gradprobe.cli import app

runner = CliRunner()


def test_unknown_dataset_is_refused_with_the_allowed_names():
    result = runner.invoke(app, ["data", "fetch", "cifar10"])
    assert result.exit_code == 2
    assert "dataset 'cifar10' is not one of: mnist" in result.output


def test_files_already_there_are_verified_not_downloaded(tmp_path, mnist_source):
    if mnist_source.layout != "idx":
        pytest.skip(f"the MNIST found is in the {mnist_source.layout} layout, not the four files")
    for path in mnist_source.files:
        shutil.copy(path, tmp_path / path.name)
    result = runner.invoke(app, ["data", "fetch", "mnist", "--dest", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.output.count("md5 ok") == 4
    assert f"the four files are in {tmp_path}" in result.output


def test_a_corrupted_file_is_fetched_again_and_offline_fails_in_one_line(tmp_path):
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip")
    # discard port 9 on this machine: refused at once, the network is never touched
    args = ["--dest", str(tmp_path), "--timeout", "2", "--mirror", "http://127.0.0.1:9/"]
    result = runner.invoke(app, ["data", "fetch", "mnist", *args])
    assert result.exit_code == 2
    assert "could not download train-images-idx3-ubyte.gz" in result.output
    assert "127.0.0.1:9" in result.output
    assert "GRADPROBE_MNIST" in result.output
