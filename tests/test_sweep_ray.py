"""sweep(backend="ray"): the local sweep's grid, rows and run directories, on a Ray instance.

One local Ray instance with 2 CPUs serves the module. The oracle for each run is the same
Experiment trained here, in this process: training is deterministic on CPU with a seed, so
the Ray worker's record must equal it.
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest

import gradprobe
from gradprobe.lab.config import ConfigError, Experiment
from gradprobe.lab.sweep import run_name, summarize, sweep
from gradprobe.lab.trainer import train

# blobs needs no scikit-learn: each Ray worker imports only torch and gradprobe
TINY = Experiment(
    seed=1, dataset="blobs", limit_train=60, depth=1, width=8, epochs=2, batch_size=20
)


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray", reason="the Ray sweep backend needs ray (extra)")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def assert_same_record(got, want):
    assert got.layers == want.layers
    np.testing.assert_array_equal(got.steps, want.steps)
    assert got.quantities == want.quantities
    for quantity in want.quantities:  # NaN where not measured, in both
        np.testing.assert_array_equal(got[quantity], want[quantity], err_msg=quantity)
    np.testing.assert_array_equal(got.loss, want.loss)
    np.testing.assert_array_equal(got.global_grad_norm, want.global_grad_norm)


def test_ray_sweep_equals_local_runs_and_reports_failures_in_rows(ray_session, tmp_path):
    grid = {"activation": ["sigmoid", "relu"], "batch_size": [20, 61]}
    rows = sweep(TINY, grid, tmp_path, backend="ray")
    assert [r["name"] for r in rows] == [
        "activation=sigmoid,batch_size=20",
        "activation=sigmoid,batch_size=61",
        "activation=relu,batch_size=20",
        "activation=relu,batch_size=61",
    ]
    for row in rows:
        point = {k: row[k] for k in grid}
        if row["batch_size"] == 61:  # larger than the 60 examples: its row says so
            assert row["status"] == "failed"
            assert "batch_size=61 is larger than the training set" in row["error"]
            assert not (tmp_path / row["name"]).exists()
            continue
        rec = gradprobe.load(tmp_path / row["name"])
        assert rec.status == "done" and len(rec) == 6
        here = train(dataclasses.replace(TINY, name=run_name(point), **point), progress=False)
        assert_same_record(rec, here.record)
        want = summarize(row["name"], point, here)  # the local backend's row, without seconds
        assert {k: v for k, v in row.items() if k != "seconds"} == want
        assert row["seconds"] > 0


def test_jobs_limits_trials_in_flight_and_overwrite_passes_on(ray_session, tmp_path):
    grid = {"depth": [1, 2]}
    first = sweep(TINY, grid, tmp_path, backend="ray", jobs=1)
    again = sweep(TINY, grid, tmp_path, backend="ray", jobs=1)  # the runs are there
    assert [r["status"] for r in first] == ["done", "done"]
    assert all(r["status"] == "failed" and "already holds a run" in r["error"] for r in again)
    rows = sweep(TINY, grid, tmp_path, backend="ray", overwrite=True)
    assert [r["status"] for r in rows] == ["done", "done"]


def test_cli_sweep_backend_ray(ray_session, tmp_path):
    from typer.testing import CliRunner

    from gradprobe.cli import app

    runner = CliRunner(env={"COLUMNS": "120", "NO_COLOR": "1", "TERM": "dumb"})
    args = ["sweep", "--backend", "ray", "--grid", "depth=1,2", "--out", str(tmp_path)]
    args += ["--set", "dataset=blobs", "--set", "limit_train=60", "--set", "seed=1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    for depth in (1, 2):
        assert gradprobe.load(tmp_path / f"depth={depth}").meta["config"]["depth"] == depth
    bad = runner.invoke(app, ["sweep", "--grid", "depth=1", "--address", "auto", "--out", "x"])
    assert bad.exit_code == 2 and "error: address='auto' is for backend='ray'" in bad.stderr


def test_address_goes_to_ray_init_and_a_started_session_is_shut_down(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray", reason="the Ray sweep backend needs ray (extra)")
    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(("init", kw)))
    monkeypatch.setattr(ray, "shutdown", lambda: calls.append(("shutdown", {})))
    monkeypatch.setattr(ray, "remote", lambda **kw: pytest.fail("no cluster: stop here"))
    with pytest.raises(pytest.fail.Exception, match="no cluster"):
        sweep(TINY, {"depth": [1]}, tmp_path, backend="ray", address="ray://head:10001")
    assert calls == [
        ("init", {"address": "ray://head:10001", "include_dashboard": False}),
        ("shutdown", {}),
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backend": "dask"}, "backend='dask' is not one of: local, ray"),
        ({"address": "auto"}, "address='auto' is for backend='ray'"),
        ({"backend": "ray", "jobs": 0}, "jobs=0 is not valid"),
    ],
)
def test_bad_backend_arguments_are_refused_before_any_run(kwargs, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        sweep(TINY, {"depth": [1]}, tmp_path, **kwargs)
    assert not any(tmp_path.iterdir())


def test_without_ray_the_error_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if absent
    with pytest.raises(
        ImportError, match=r'needs Ray, which is not installed: pip install "gradprobe\[ray\]"'
    ):
        sweep(TINY, {"depth": [1]}, tmp_path, backend="ray")
    assert not any(tmp_path.iterdir())
