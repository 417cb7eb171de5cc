"""`gradprobe train / sweep / demo`: what they write and print, and one-line errors."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from typer.testing import CliRunner

import gradprobe
from gradprobe import cli
from gradprobe.cli import app, fmt
from gradprobe.lab import demo

ENV = {"COLUMNS": "120", "NO_COLOR": "1", "TERM": "dumb"}
runner = CliRunner(env=ENV)
# 100 digits in batches of 20: 5 steps per epoch
TINY = ["--set", "limit_train=100", "--set", "depth=2", "--set", "width=8", "--set",
        "batch_size=20", "--set", "epochs=2"]  # fmt: skip


def test_train_writes_the_run_and_prints_its_numbers(tmp_path):
    out = tmp_path / "a"
    result = runner.invoke(app, ["train", *TINY, "--set", "seed=5", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rec = gradprobe.load(out)
    assert rec.status == "done" and len(rec) == 10 and rec.meta["config"]["seed"] == 5
    lines = result.stdout.splitlines()
    loss = f"loss {fmt(rec.loss[0])} -> {fmt(rec.loss[-1])}"
    assert lines[0] == f"a: done, 10 steps recorded (step 0 to 9), {loss}"
    last = rec.meta["evaluation"][-1]
    row = next(line for line in lines if line.split()[:2] == ["2", "10"])
    assert row.split()[2:] == [fmt(last[k]) for k in list(last)[2:]]
    assert lines[-1] == f"run: {out}"


def test_train_from_a_toml_file_with_an_override(tmp_path):
    config = tmp_path / "exp.toml"
    config.write_text('seed = 2\ndataset = "blobs"\nactivation = "tanh"\nepochs = 5\n')
    out = tmp_path / "b"
    args = ["train", str(config), *TINY, "--set", "activation=relu", "--out", str(out)]
    result = runner.invoke(app, [*args, "--no-progress"])
    assert result.exit_code == 0, result.output
    cfg = gradprobe.load(out).meta["config"]
    assert (cfg["seed"], cfg["dataset"], cfg["activation"], cfg["epochs"]) == (
        2,
        "blobs",
        "relu",
        2,
    )
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "pass overwrite=True" in again.stderr
    assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "seed=0", "--set", "dept=3"], "error: unknown key 'dept'; valid keys: seed,"),
        (["--set", "seed=0", "--set", "activation=sigmod"], "error: activation='sigmod' is not"),
        (["--set", "seed=0", "--set", "depth=-1"], "error: depth=-1 is not valid"),
        (["--set", "seed=0", "--set", "batch_size=101"], "error: batch_size=101 is larger than"),
        (["--set", "seed=0", "--set", "dataset=mnist", "--set", "data_path=/nonexistent"],
         "error: MNIST not found. Looked at: path= /nonexistent: does not exist Expected"),
        (["missing.toml"], "error: no config file at missing.toml"),
    ],
)  # fmt: skip
def test_train_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    result = runner.invoke(app, ["train", *TINY, *args, "--out", str(tmp_path / "r")])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(message)
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output


def test_train_nonfinite_loss_exits_1_with_the_step(tmp_path):
    args = ["--set", "seed=0", "--set", "activation=relu", "--set", "init=he_normal",
            "--set", "loss=quadratic", "--set", "lr=1e4"]  # fmt: skip
    with pytest.warns(RuntimeWarning):
        result = runner.invoke(app, ["train", *TINY, *args, "--out", str(tmp_path / "nan")])
    assert result.exit_code == 1
    assert "error: the loss became non-finite (" in result.stdout
    assert gradprobe.load(tmp_path / "nan").status == "failed"


def test_sweep_runs_the_grid_and_tabulates_it(tmp_path):
    args = ["sweep", *TINY, "--set", "dataset=blobs", "--grid", "activation=sigmoid,relu",
            "--grid", "seed=0", "--out", str(tmp_path), "--jobs", "1"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    for activation in ("sigmoid", "relu"):
        name = f"activation={activation},seed=0"
        rec = gradprobe.load(tmp_path / name)
        assert rec.status == "done" and len(rec) == 10
        row = next(line for line in result.stdout.splitlines() if line.startswith(f" {activation}"))
        acc = rec.meta["evaluation"][-1]["test_accuracy"]
        assert row.split()[:4] == [activation, "0", "done", f"{acc:.3g}"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--grid", "depth"], "error: --grid 'depth' is not key=v1,v2"),
        (["--grid", "depht=2", "--set", "seed=0"], "error: unknown key 'depht'"),
        (["--grid", "depth=2,x", "--set", "seed=0"], "error: depth='x' is not valid"),
        (["--grid", "depth=2", "--set", "seed=0", "--jobs", "0"], "error: jobs=0 is not valid"),
    ],
)
def test_sweep_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    result = runner.invoke(app, ["sweep", *args, "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1
    assert not any(tmp_path.iterdir())


def test_demo_command_on_tiny_settings(tmp_path):
    args = ["demo", "--out", str(tmp_path), "--depth", "2", "--width", "8", "--epochs", "1",
            "--limit-train", "100"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    sigmoid = gradprobe.load(tmp_path / "demo-sigmoid")
    speed = sigmoid["delta_norm"][sigmoid.steps < 10].mean(axis=0)
    assert "In the sigmoid net the gradient reaching fc1 is " in text
    assert f"fc1 {demo._fmt(float(speed[0]))}" in text
    assert np.all(speed > 0) and (tmp_path / "demo-relu" / "run.json").is_file()


def test_demo_command_defaults_are_the_documented_demo():
    defaults = {p.name: p.default for p in inspect.signature(cli.demo).parameters.values()}
    assert defaults["depth"] == demo.DEMO_DEPTH and defaults["width"] == demo.DEMO_WIDTH
    assert defaults["epochs"] == demo.DEMO_EPOCHS and defaults["limit_train"] is None
    assert str(defaults["out"]) == "runs"


def test_train_without_a_seed_uses_seed_0_says_so_and_records_it(tmp_path):
    # DESIGN.md's example `gradprobe train --set depth=5 --set activation=tanh --out runs/a`
    out = tmp_path / "a"
    result = runner.invoke(app, ["train", *TINY, "--set", "activation=tanh", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "train: no seed given, using seed=0 (recorded in run.json" in result.stderr
    assert gradprobe.load(out).meta["config"]["seed"] == 0
