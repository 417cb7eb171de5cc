"""`gradprobe fix RUN_DIR` on a lab run: the run's Experiment becomes a factory that takes
every architecture option; the table is printed, each trial writes its run directory, and
bad input fails in one line."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from gradprobe.cli import app
from gradprobe.lab.config import Experiment
from gradprobe.lab.fixes.lab_run import LabData, LabModel, experiment_of, lab_options
from gradprobe.lab.trainer import train
from gradprobe.record import load

# A deep sigmoid net with Nielsen's init on a slice of the digits: it vanishes at once.
SICK = dict(seed=0, dataset="digits", limit_train=200, depth=6, width=16, activation="sigmoid",
            batch_size=20, steps=20, epochs=2, lr=0.1)  # fmt: skip


@pytest.fixture(scope="module")
def sick_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("lab") / "sick"
    train(Experiment(**SICK), run_dir, progress=False)
    return run_dir


def test_lab_factory_rebuilds_the_run_with_options(sick_run):
    exp = experiment_of(sick_run)
    assert exp == Experiment(**SICK)
    assert lab_options(exp) == {"activation", "norm", "residual_alpha"}
    model = LabModel(exp)(activation="relu", norm="layer")
    kinds = {type(m).__name__ for m in model.modules()}
    assert {"ReLU", "LayerNorm"} <= kinds and "Sigmoid" not in kinds
    assert type(LabModel(exp)(residual_alpha=0.5)).__name__ == "ResidualMLP"
    x, y = LabData(exp).batch(0)
    assert x.shape == (20, 64) and y.shape == (20,)
    x2, _ = LabData(exp).batch(10)  # the second epoch draws a new permutation
    assert x2.shape == (20, 64)


def test_fix_command_prints_the_ranking_and_writes_every_trial(sick_run, tmp_path, monkeypatch):
    import gradprobe.viz.report as report

    written = []  # the report itself is tested with gradprobe.viz; here: what it is given
    monkeypatch.setattr(report, "write_report", lambda runs, out, **kw: written.append(runs) or out)
    out = tmp_path / "fix"
    args = ["fix", str(sick_run), "--steps", "10", "--seeds", "1", "-o", str(out)]
    args += ["--remedy", "relu_he", "--remedy", "glorot_init"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("targets: ") and "vanishing_gradient" in lines[0]
    assert lines[2].startswith("-  baseline")
    assert lines[3].startswith("1  relu_he")  # the activation swap restores the gradient
    changes = next(line for line in lines[4:] if not line.startswith("      "))
    assert changes.startswith("   changes: activation=relu")  # below its row's wrapped cells
    assert max(map(len, lines)) <= 100
    for name in ("baseline", "relu_he", "glorot_init"):
        rec = load(out / name / "seed0")
        assert len(rec) == 10 and rec.meta["config"]["trial"] == name
    assert f"comparison report: {out / 'report.html'}" in result.output
    assert written == [[str(out / n / "seed0") for n in ("baseline", "relu_he", "glorot_init")]]
    again = CliRunner().invoke(app, args)  # the trials are there: refuse to overwrite
    assert again.exit_code == 2 and "already holds files" in again.output


def test_fix_command_json_and_bad_input(sick_run, tmp_path):
    args = ["fix", str(sick_run), "--steps", "3", "--seeds", "1", "--remedy", "relu_he"]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["ranked"][0]["name"] == "relu_he" and data["settings"]["steps"] == 3
    bad = CliRunner().invoke(app, ["fix", str(sick_run), "--steps", "0"])
    assert bad.exit_code == 2 and "steps=0 is not valid" in bad.output
    missing = CliRunner().invoke(app, ["fix", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "error:" in missing.output
    unknown = CliRunner().invoke(app, [*args[:-1], "relu_hee"])
    assert unknown.exit_code == 2 and "not among" in unknown.output
