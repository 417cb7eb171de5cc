"""sweep(): one run directory per grid point, in worker processes; failures become rows."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import gradprobe
from gradprobe.lab.config import ConfigError, Experiment
from gradprobe.lab.sweep import grid_points, learning_speed, run_name, summary_table, sweep
from gradprobe.lab.trainer import train

# blobs needs no scikit-learn: each spawned worker imports only torch and gradprobe
TINY = Experiment(
    seed=1, dataset="blobs", limit_train=60, depth=1, width=8, epochs=2, batch_size=20
)


def test_grid_points_are_the_typed_cartesian_product():
    grid = {"activation": ["tanh", "relu"], "depth": ["2", 5], "sizes": ["64,9,10"]}
    points = grid_points(grid)
    assert points == [
        {"activation": "tanh", "depth": 2, "sizes": (64, 9, 10)},
        {"activation": "tanh", "depth": 5, "sizes": (64, 9, 10)},
        {"activation": "relu", "depth": 2, "sizes": (64, 9, 10)},
        {"activation": "relu", "depth": 5, "sizes": (64, 9, 10)},
    ]
    assert run_name(points[0]) == "activation=tanh,depth=2,sizes=64-9-10"


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ({"dept": [1]}, "unknown key 'dept'"),
        ({"depth": []}, "give a non-empty list"),
        ({"depth": "2,5"}, "give a non-empty list"),
        ({"depth": ["x"]}, "depth='x' is not valid: expected int"),
    ],
)
def test_bad_grids_are_refused_before_any_run(grid, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        sweep(TINY, grid, tmp_path)
    assert not any(tmp_path.iterdir())


def test_bad_value_of_a_point_is_refused_before_any_run(tmp_path):
    with pytest.raises(ConfigError, match="depth=0"):
        sweep(TINY, {"depth": [1, 0]}, tmp_path)
    assert not any(tmp_path.iterdir())


def test_learning_speed_is_the_mean_over_the_first_steps():
    rec = gradprobe.Record(
        ["a", "b"], [0, 1, 2, 5], {"delta_norm": [[1, 4], [3, np.nan], [5, 8], [100, 100]]}
    )
    np.testing.assert_allclose(learning_speed(rec, 3), [3.0, 6.0])
    np.testing.assert_allclose(learning_speed(rec), [27.25, 112 / 3])


def test_sweep_2x2_in_two_processes(tmp_path):
    grid = {"activation": ["sigmoid", "relu"], "batch_size": [20, 61]}
    rows = sweep(TINY, grid, tmp_path, jobs=2)
    assert [r["name"] for r in rows] == [
        "activation=sigmoid,batch_size=20",
        "activation=sigmoid,batch_size=61",
        "activation=relu,batch_size=20",
        "activation=relu,batch_size=61",
    ]
    for row in rows:
        if row["batch_size"] == 61:  # larger than the 60 examples: its row says so
            assert row["status"] == "failed"
            assert "batch_size=61 is larger than the training set" in row["error"]
            assert not (tmp_path / row["name"]).exists()
            continue
        rec = gradprobe.load(tmp_path / row["name"])
        assert rec.status == row["status"] == "done" and len(rec) == row["steps"] == 6
        assert rec.meta["config"]["activation"] == row["activation"]
        first_epoch = rec["delta_norm"][rec.steps < 3]  # 3 steps per epoch
        ratio = first_epoch[:, 0].mean() / first_epoch[:, -1].mean()
        assert row["delta_ratio"] == pytest.approx(ratio, rel=1e-12)
        assert row["test_accuracy"] == rec.meta["evaluation"][-1]["test_accuracy"]
    # the same settings trained again here give the same record: seeds, not processes
    again = train(dataclasses.replace(TINY, activation="relu"), progress=False).record
    np.testing.assert_array_equal(again.loss, gradprobe.load(tmp_path / rows[2]["name"]).loss)
    table = summary_table(rows, list(grid))
    assert [c.header for c in table.columns][:3] == ["activation", "batch size", "status"]
    assert table.row_count == 4
