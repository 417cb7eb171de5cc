"""The command line: golden output of `show`, the version, and one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gradprobe._version import __version__
from gradprobe.cli import app, fmt
from gradprobe.record import RunDir

NAN, INF = np.nan, np.inf
ENV = {"COLUMNS": "120", "NO_COLOR": "1", "TERM": "dumb"}
runner = CliRunner(env=ENV)


def make_run(path: Path) -> Path:
    """A finished run of fixed numbers: 3 layers, steps 0, 10, 20."""
    run = RunDir.create(path)
    run.store.write_layers(
        [
            {"name": "net.0", "type": "Linear"},
            {"name": "net.2", "type": "Linear"},
            {"name": "net.4", "type": None},
        ]
    )
    values = {
        "delta_norm": [[1e-5, 2e-3, 0.5], [3e-6, 1e-3, 0.4], [1.234e-7, 1e-3, 0.3]],
        "grad_norm": [[1, 2, 3], [4, 5, 6], [7, 8, INF]],
        "act_mean": [[0.5, 12345.0, NAN], [0.25, 0.1, NAN], [NAN, NAN, NAN]],
        "dead_frac": [[0, 0.125, 0], [0, 0.25, 0], [0, 0.5, 0]],
    }
    run.store.append([0, 10, 20], values, {"loss": [2.30, 1.0, 0.0123]})
    run.mark_flush(3)
    run.set_status("done")
    run.close()
    return path


GOLDEN_SHOW = """\
exp1: done, 3 steps recorded (step 0 to 20), loss 2.3 -> 0.0123
first non-finite value: step 20, at net.4 (backward)
                   delta_   grad_   update_   act_   saturated_   dead_
 layer   type        norm    norm     ratio   mean         frac    frac
────────────────────────────────────────────────────────────────────────
 net.0   Linear   1.23e-7       7         -   0.25            -       0
 net.2   Linear     0.001       8         -    0.1            -     0.5
 net.4   -            0.3     inf         -      -            -       0
"""


def lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines()]


def test_show_golden(tmp_path):
    result = runner.invoke(app, ["show", str(make_run(tmp_path / "exp1"))])
    assert result.exit_code == 0, result.output
    assert lines(result.stdout) == lines(GOLDEN_SHOW)


def test_show_chosen_quantities(tmp_path):
    run = make_run(tmp_path / "exp1")
    result = runner.invoke(app, ["show", str(run), "--quantities", "grad_norm, act_std"])
    assert result.exit_code == 0, result.output
    assert lines(result.stdout)[2:] == [
        "                  grad_   act_",
        " layer   type      norm    std",
        "───────────────────────────────",
        " net.0   Linear       7      -",
        " net.2   Linear       8      -",
        " net.4   -          inf      -",
    ]


def test_show_unknown_quantity(tmp_path):
    result = runner.invoke(app, ["show", str(make_run(tmp_path / "exp1")), "-q", "gradnorm"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: unknown quantities ['gradnorm']; this run has [")


def test_show_run_without_steps(tmp_path):
    RunDir.create(tmp_path / "fresh")
    result = runner.invoke(app, ["show", str(tmp_path / "fresh")])
    assert result.exit_code == 0
    assert result.stdout == "fresh: running, 0 steps recorded\n"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("missing", "error: no run directory at {path}"),
        ("empty", "error: {path} is not a gradprobe run directory: it has no run.json"),
    ],
)
def test_bad_run_dir_is_one_line_and_exit_2(tmp_path, name, message):
    (tmp_path / "empty").mkdir()
    path = tmp_path / name
    result = runner.invoke(app, ["show", str(path)])
    assert result.exit_code == 2
    assert result.stderr.startswith(message.format(path=path))
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"gradprobe {__version__}\n"


def test_no_command_prints_help_and_nothing_unimplemented():
    result = runner.invoke(app, [])
    assert "show" in result.output and "not implemented" not in result.output.lower()


def test_python_dash_m_entry_point(tmp_path):
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, **ENV, "PYTHONPATH": str(root)}
    command = [sys.executable, "-m", "gradprobe", "show", str(make_run(tmp_path / "exp1"))]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert lines(proc.stdout) == lines(GOLDEN_SHOW)


@pytest.mark.parametrize(
    ("x", "text"),
    [
        (NAN, "-"),
        (0.0, "0"),
        (INF, "inf"),
        (-INF, "-inf"),
        (0.5, "0.5"),
        (2.3456, "2.35"),
        (123.456, "123"),
        (0.001, "0.001"),
        (0.00099949, "9.99e-4"),
        (-1.5e-12, "-1.50e-12"),
        (12345.0, "1.23e4"),
        (7.0, "7"),
    ],
)
def test_fmt(x, text):
    assert fmt(x) == text


def test_show_killed_and_failed_runs(tmp_path):
    RunDir.create(tmp_path / "killed").update_meta(pid=999_999_999)  # no such process
    result = runner.invoke(app, ["show", str(tmp_path / "killed")])
    assert result.stdout == "killed: interrupted (its process is gone), 0 steps recorded\n"
    RunDir.create(tmp_path / "failed").set_status("failed", error="RuntimeError: loss is nan")
    result = runner.invoke(app, ["show", str(tmp_path / "failed")])
    assert lines(result.stdout) == [
        "failed: failed, 0 steps recorded",
        "error: RuntimeError: loss is nan",
    ]
