"""The demo: its numbers are the runs' own, its sentence follows them, its setup is fixed."""

from __future__ import annotations

import numpy as np
import pytest
from rich.console import Console

import gradprobe
from gradprobe.lab import demo
from gradprobe.lab.demo import demo_experiments, reading, run_demo


def test_reading_of_known_speeds_golden():
    speed = {"sigmoid": np.array([1e-3, 1e-2, 1e-1, 1.0]), "relu": np.array([2.0, 1.5, 1.2, 1])}
    assert reading(["fc1", "fc2", "fc3", "fc4"], speed) == (
        "In the sigmoid net the gradient reaching fc1 is 1/1,000 of that at fc4 (x0.10 per "
        "layer); with ReLU + He init it is 2x (x1.26 per layer), so the sigmoid net's first "
        "layer learns 2,000x slower, relative to its output layer, than the ReLU net's: the "
        "vanishing gradient."
    )


def test_reading_says_so_when_sigmoid_is_not_held_back():
    speed = {"sigmoid": np.array([0.5, 1.0]), "relu": np.array([0.25, 1.0])}
    text = reading(["a", "b"], speed)
    assert "is 1/2 of that at b (x0.50 per layer)" in text and "1/4 (x0.25" in text
    assert text.endswith("so here the sigmoid net's first layers are not held back.")


def test_default_demo_is_the_documented_one():
    nets = demo_experiments()
    for name, (activation, init) in {"sigmoid": ("sigmoid", "nielsen"),
                                     "relu": ("relu", "he_normal")}.items():  # fmt: skip
        exp = nets[name]
        assert (exp.activation, exp.init, exp.name) == (activation, init, f"demo-{name}")
        assert (exp.dataset, exp.model, exp.depth, exp.width) == ("digits", "mlp", 5, 32)
        assert (exp.epochs, exp.batch_size, exp.lr, exp.seed) == (5, 10, 0.1, 0)
        assert (exp.loss, exp.optimizer, exp.limit_train) == ("cross_entropy", "sgd", None)
    assert (demo.DEMO_DEPTH, demo.DEMO_WIDTH, demo.DEMO_EPOCHS) == (5, 32, 5)


def test_tiny_demo_prints_the_runs_own_numbers(tmp_path):
    console = Console(record=True, width=120, color_system=None)
    result = run_demo(tmp_path, depth=2, width=8, epochs=1, limit_train=100, console=console)
    text = console.export_text()
    assert result.layers == ["fc1", "fc2", "fc3"]
    for name in ("sigmoid", "relu"):
        rec = gradprobe.load(tmp_path / f"demo-{name}")
        assert rec.status == "done" and rec.meta["config"]["activation"] == name
        steps_per_epoch = rec.meta["steps_per_epoch"]
        assert steps_per_epoch == 10  # 100 images in batches of 10
        oracle = rec["delta_norm"][rec.steps < steps_per_epoch].mean(axis=0)
        np.testing.assert_allclose(result.speed[name], oracle, rtol=1e-12)
        acc = rec.meta["evaluation"][-1]["test_accuracy"]
        assert f"{acc:.3f}" in text
    assert result.sentence == reading(result.layers, result.speed)
    assert " ".join(result.sentence.split()) in " ".join(text.split())
    sigmoid = result.speed["sigmoid"]
    row = next(line for line in text.splitlines() if line.strip().startswith("fc1"))
    assert demo._fmt(float(sigmoid[0])) in row
    assert demo._fmt(float(sigmoid[0] / sigmoid[-1])) in row
    # a second demo replaces the first
    run_demo(tmp_path, depth=2, width=8, epochs=1, limit_train=100, console=Console(quiet=True))
    assert len(gradprobe.load(tmp_path / "demo-relu")) == 10


def test_demo_rejects_bad_settings(tmp_path):
    with pytest.raises(ValueError, match="depth=0"):
        run_demo(tmp_path, depth=0)
