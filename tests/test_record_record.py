"""Record: dense arrays in, the same arrays out, read-only, with clear errors."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from gradprobe.record import Record

NAN, INF = np.nan, np.inf
LAYERS = ["fc1", "fc2", "fc3"]
STEPS = [0, 5, 10, 20]


def make(values=None, **kwargs) -> Record:
    if values is None:
        values = {"grad_norm": np.arange(12.0).reshape(4, 3)}
    return Record(LAYERS, STEPS, values, **kwargs)


def test_arrays_come_back_as_given():
    grad = np.arange(12.0).reshape(4, 3)
    delta = grad * 0.5
    delta[1, 2] = NAN
    loss = np.array([2.0, 1.5, NAN, 0.5])
    rec = make({"grad_norm": grad, "delta_norm": delta}, step_values={"loss": loss})
    assert rec.layers == LAYERS
    assert rec.steps.dtype == np.int64
    np.testing.assert_array_equal(rec.steps, STEPS)
    np.testing.assert_array_equal(rec["grad_norm"], grad)
    np.testing.assert_array_equal(rec["delta_norm"], delta)
    np.testing.assert_array_equal(rec.loss, loss)
    np.testing.assert_array_equal(rec.step_values["loss"], loss)
    assert rec["grad_norm"].dtype == np.float64
    assert len(rec) == 4
    assert "grad_norm" in rec and "loss" not in rec


def test_absent_step_quantities_are_all_nan():
    rec = make()
    assert rec.loss.shape == (4,) and np.isnan(rec.loss).all()
    assert rec.global_grad_norm.shape == (4,) and np.isnan(rec.global_grad_norm).all()


def test_record_is_immutable():
    grad = np.arange(12.0).reshape(4, 3)
    rec = make({"grad_norm": grad}, step_values={"loss": np.ones(4)}, meta={"status": "done"})
    grad[0, 0] = 99.0  # the caller's array is not the record's
    assert rec["grad_norm"][0, 0] == 0.0
    for array in (rec["grad_norm"], rec.steps, rec.loss, rec.layer("fc1")["grad_norm"]):
        with pytest.raises(ValueError, match="read-only"):
            array[0] = 1
        with pytest.raises(ValueError):
            array.flags.writeable = True
    rec.layers.append("x")
    rec.meta["status"] = "failed"
    rec.layer_info[0]["name"] = "x"
    assert rec.layers == LAYERS and rec.status == "done" and rec.layer_info[0]["name"] == "fc1"


def test_quantities_canonical_order_then_sorted():
    values = {q: np.zeros((4, 3)) for q in ["zeta", "delta_norm", "alpha", "grad_norm"]}
    assert make(values).quantities == ["grad_norm", "delta_norm", "alpha", "zeta"]


def test_unknown_quantity_lists_the_available_ones():
    rec = make(step_values={"loss": np.ones(4)})
    with pytest.raises(KeyError, match=r"no quantity 'act_std'.*\['grad_norm'\]"):
        rec["act_std"]
    with pytest.raises(KeyError, match=r"per-step quantity: use rec.step_values\['loss'\]"):
        rec["loss"]


def test_layer_gives_each_quantity_over_steps():
    grad = np.arange(12.0).reshape(4, 3)
    rec = make({"grad_norm": grad, "act_mean": -grad})
    fc2 = rec.layer("fc2")
    assert list(fc2) == ["grad_norm", "act_mean"]
    np.testing.assert_array_equal(fc2["grad_norm"], [1.0, 4.0, 7.0, 10.0])
    np.testing.assert_array_equal(fc2["act_mean"], [-1.0, -4.0, -7.0, -10.0])
    with pytest.raises(KeyError, match=r"no layer 'fc9'.*\['fc1', 'fc2', 'fc3'\]"):
        rec.layer("fc9")


def test_series_kept_with_their_shape():
    hist = np.arange(4 * 3 * 5, dtype=float).reshape(4, 3, 5)
    rec = make(series={"act_hist": hist})
    np.testing.assert_array_equal(rec.series["act_hist"], hist)
    with pytest.raises(ValueError, match=r"series 'h' has shape \(4, 3\); expected \(4, 3, k\)"):
        make(series={"h": np.zeros((4, 3))})


def test_meta_status_layer_info_and_repr():
    info = [{"name": n, "type": "Linear", "n_params": 10} for n in LAYERS]
    rec = make(layer_info=info, meta={"status": "done", "name": "a"})
    assert rec.status == "done" and rec.meta == {"status": "done", "name": "a"}
    assert rec.layer_info == info
    assert repr(rec) == "Record(3 layers x 4 steps, 1 quantities, status='done')"
    assert make().layer_info[1] == {"name": "fc2", "type": None}
    assert make().status is None
    assert repr(Record([], [], {})) == "Record(0 layers x 0 steps, 0 quantities, status=None)"


def test_not_iterable():
    with pytest.raises(TypeError):
        list(make())


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([0, 5, 5, 20], r"strictly increasing; steps\[1\]=5 is followed by steps\[2\]=5"),
        ([0, 5, 3, 20], r"steps\[1\]=5 is followed by steps\[2\]=3"),
        ([0.0, 1.5, 2.0, 3.0], "1-d array of integers; got float64"),
        ([[0, 1, 2, 3]], r"1-d array of integers; got int64 \(1, 4\)"),
    ],
)
def test_bad_steps(steps, message):
    with pytest.raises(ValueError, match=message):
        Record(LAYERS, steps, {})


def test_bad_shapes_name_quantity_and_both_shapes():
    with pytest.raises(
        ValueError,
        match=r"quantity 'delta_norm' has shape \(4, 2\); expected \(4, 3\) \(n_steps, n_layers\)",
    ):
        make({"delta_norm": np.zeros((4, 2))})
    with pytest.raises(
        ValueError, match=r"step quantity 'loss' has shape \(3,\); expected \(4,\) \(n_steps,\)"
    ):
        make(step_values={"loss": np.zeros(3)})


def test_bad_layers():
    with pytest.raises(ValueError, match="unique"):
        Record(["a", "a"], [0], {})
    with pytest.raises(ValueError, match="layer_info names"):
        make(layer_info=[{"name": "x"}, {"name": "fc2"}, {"name": "fc3"}])
    with pytest.raises(ValueError, match=r"\['grad_norm'\] given more than once"):
        make(step_values={"grad_norm": np.zeros(4)})


def test_record_package_imports_no_torch():
    # DESIGN.md: record may import numpy, the standard library and gradprobe.stats only.
    allowed = {"numpy", "gradprobe"}
    for path in Path(__file__).parents[1].joinpath("gradprobe", "record").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top in allowed or top in _stdlib(), f"{path.name} imports {name}"
                if top == "gradprobe":
                    assert name.split(".")[1] in ("record", "stats", "_version"), name


def _stdlib() -> frozenset[str]:
    import sys

    return frozenset(sys.stdlib_module_names) | {"__future__"}
