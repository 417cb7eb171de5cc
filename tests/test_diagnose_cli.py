"""`gradprobe diagnose RUN_DIR`: golden text, --json, findings.json and the exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gradprobe.cli import app
from gradprobe.diagnose.finding import Finding
from gradprobe.diagnose.report import read_findings
from gradprobe.diagnose.thresholds import Thresholds
from gradprobe.record import RunDir

ENV = {"COLUMNS": "96", "NO_COLOR": "1", "TERM": "dumb"}  # the golden text fits the 100 limit
runner = CliRunner(env=ENV)
NAN = np.nan


def make_run(path: Path, gain: float) -> Path:
    """A finished run of 4 sigmoid layers of 16 (sigma_w = 1), 10 steps; per-unit delta
    falls by `gain` per layer toward the input; 60% of fc1's units saturated."""
    run = RunDir.create(path)
    names = ["fc1", "fc2", "fc3", "fc4"]
    run.store.write_layers(
        [
            {
                "name": n,
                "type": "Linear",
                "activation": "sigmoid" if i < 3 else None,
                "weight_shapes": [[16, 16]],
            }
            for i, n in enumerate(names)
        ]
    )
    n_steps = 10
    delta = np.tile(4.0 * gain ** np.arange(3, -1, -1.0), (n_steps, 1))
    weight = np.full((n_steps, 4), NAN)
    weight[::5] = 4.0  # ||W||_F = 4 = sqrt(16): sigma_w = 1, on detail steps 0 and 5
    saturated = np.full((n_steps, 4), NAN)
    saturated[::5] = [0.6, 0.1, 0.1, NAN]
    values = {
        "delta_norm": delta.tolist(),
        "weight_norm": weight.tolist(),
        "saturated_frac": saturated.tolist(),
    }
    run.store.append(list(range(n_steps)), values, {"loss": np.linspace(2.3, 1.0, n_steps)})
    run.mark_flush(n_steps)
    run.set_status("done")
    run.close()
    return path


GOLDEN = """\
sick: done, 10 steps recorded (step 0 to 9), loss 2.3 -> 1
1 error, 1 warning
ERROR   vanishing_gradient at fc1..fc4 (steps 0-4)
        x0.04 per layer, 6.4e-05 at fc1 over 3 layers
        cause: the sigmoid derivative, at most 1/4 (27% of the units saturated; activation
        factor x0.04, weight factor x1)
        fix: use ReLU with He init (sigma_w^2 = 2), or add residual connections / normalisation
WARNING saturation at fc1 (steps 0-5)
        up to 60% of the units saturated (|a| within 3% of an asymptote)
        cause: pre-activations too large for a sigmoid/tanh: the weights or inputs are too
        large, so the derivative is ~0 for most units
        fix: normalise the inputs, init the weights with sigma_w^2 = 1 (Glorot/LeCun), add
        LayerNorm/BatchNorm before the activation, or use ReLU with He init
"""


def lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines()]


def test_golden_text_and_exit_1_on_an_error(tmp_path):
    run = make_run(tmp_path / "sick", gain=0.04)
    result = runner.invoke(app, ["diagnose", str(run)])
    assert result.exit_code == 1, result.output
    assert lines(result.stdout) == lines(GOLDEN)


def test_findings_json_is_written_with_time_and_thresholds(tmp_path):
    run = make_run(tmp_path / "sick", gain=0.04)
    runner.invoke(app, ["diagnose", str(run), "--set", "saturated_frac=0.7"])
    data = json.loads((run / "findings.json").read_text())
    assert data["created"][:2] == "20" and data["created"].endswith("+00:00")
    assert data["thresholds"] == Thresholds.of(saturated_frac=0.7).to_dict()
    assert data["worst_severity"] == "error"
    (f,) = read_findings(run)  # saturation is under the raised threshold
    assert f.kind == "vanishing_gradient" and f.evidence["total_ratio"] == pytest.approx(0.04**3)


def test_json_to_stdout_is_the_file(tmp_path):
    run = make_run(tmp_path / "sick", gain=0.04)
    result = runner.invoke(app, ["diagnose", str(run), "--json"])
    assert result.exit_code == 1
    printed = json.loads(result.stdout)
    assert printed == json.loads((run / "findings.json").read_text())
    assert [Finding.from_dict(d).kind for d in printed["findings"]] == [
        "vanishing_gradient",
        "saturation",
    ]


def test_warnings_only_exit_0(tmp_path):
    run = make_run(tmp_path / "mild", gain=0.09)  # 7.3e-4: a warning, not an error
    result = runner.invoke(app, ["diagnose", str(run)])
    assert result.exit_code == 0, result.output
    assert lines(result.stdout)[1:3] == [
        "2 warning",
        "WARNING vanishing_gradient at fc1..fc4 (steps 0-4)",
    ]


def test_healthy_run_exit_0(tmp_path):
    run = make_run(tmp_path / "ok", gain=1.0)
    result = runner.invoke(app, ["diagnose", str(run), "--set", "saturated_frac=0.7"])
    assert result.exit_code == 0
    assert lines(result.stdout)[1:] == ["no findings: the gradients look healthy"]
    assert json.loads((run / "findings.json").read_text())["findings"] == []


def test_bad_input_exit_2(tmp_path):
    result = runner.invoke(app, ["diagnose", str(tmp_path / "missing")])
    assert result.exit_code == 2
    assert result.stderr == f"error: no run directory at {tmp_path / 'missing'}\n"
    run = make_run(tmp_path / "ok", gain=1.0)
    result = runner.invoke(app, ["diagnose", str(run), "--set", "vanish=1"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --set 'vanish=1' must be name=value with name one of:")
    result = runner.invoke(app, ["diagnose", str(run), "--set", "window=x"])
    assert result.exit_code == 2 and "'x' is not a int (default 5)" in result.stderr
    assert not (run / "findings.json").exists()
