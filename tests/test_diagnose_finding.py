"""Finding (validation, one-line text, JSON round trip) and Thresholds (overrides, parsing)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gradprobe.diagnose.finding import KINDS, Finding
from gradprobe.diagnose.thresholds import Thresholds


def vanishing() -> Finding:
    return Finding(
        "vanishing_gradient",
        ["fc1", "fc2", "fc3", "fc4"],
        np.arange(10),
        "error",
        {
            "layer_range": "fc1..fc4",
            "gain_per_layer": np.float64(0.21),
            "n_layers": np.int64(3),
            "link_gains": {"fc2->fc1": np.float32(0.5)},
            "steps": np.array([0, 1]),
            "ratio": (1, 2.5),
        },
        cause="the sigmoid derivative",
        fix="use ReLU with He init",
        summary="x0.21 per layer, 1.0e-04 at fc1 over 3 layers",
    )


def test_str_is_one_readable_line():
    assert str(vanishing()) == (
        "vanishing_gradient at fc1..fc4 (steps 0-9): x0.21 per layer, 1.0e-04 at fc1 over 3 "
        "layers; cause: the sigmoid derivative; fix: use ReLU with He init"
    )
    f = Finding("loss_plateau", [], [40], "warning", {}, "slow", "faster")
    assert str(f) == "loss_plateau (step 40); cause: slow; fix: faster"
    f = Finding("vanishing_gradient", ["rnn"], [0, 5], "error", axis="time")
    assert str(f) == "vanishing_gradient along time at rnn (steps 0-5)"
    many = Finding("saturation", [f"fc{i}" for i in range(6)], [], "warning")
    assert str(many) == "saturation at fc0, fc1, fc2 and 3 more"


def test_repr():
    assert repr(vanishing()) == (
        "Finding('vanishing_gradient', layers=['fc1', 'fc2', 'fc3', 'fc4'], steps 0-9, "
        "severity='error', axis='depth')"
    )


def test_json_round_trip_has_no_numpy_types():
    f = vanishing()
    text = json.dumps(f.to_dict())  # raises on numpy types
    back = Finding.from_dict(json.loads(text))
    assert back == f
    assert back.evidence["n_layers"] == 3 and type(back.evidence["n_layers"]) is int
    assert back.evidence["steps"] == [0, 1] and back.evidence["ratio"] == [1, 2.5]
    assert back.steps == tuple(range(10)) and all(type(s) is int for s in back.steps)


def test_non_finite_evidence_becomes_strings():
    f = Finding("nonfinite", ["fc1"], [3], "error", {"growth": float("inf"), "x": np.nan})
    assert f.to_dict()["evidence"] == {"growth": "inf", "x": "nan"}
    json.dumps(f.to_dict(), allow_nan=False)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("kind", "vanishing", "kind='vanishing' is not one of: vanishing_gradient, "),
        ("severity", "fatal", "severity='fatal' is not one of: info, warning, error"),
        ("axis", "width", "axis='width' is not one of: depth, time"),
    ],
)
def test_bad_values_say_what_is_allowed(field, value, message):
    args = {"kind": "nonfinite", "layers": [], "steps": [], "severity": "error", field: value}
    with pytest.raises(ValueError) as err:
        Finding(**args)
    assert str(err.value).startswith(message)
    if field == "kind":
        assert all(kind in str(err.value) for kind in KINDS)


def test_from_dict_rejects_unknown_and_missing_fields():
    with pytest.raises(ValueError, match=r"unknown Finding fields \['color'\]"):
        Finding.from_dict({**vanishing().to_dict(), "color": "red"})
    with pytest.raises(ValueError, match=r"needs the fields \['severity'\]"):
        Finding.from_dict({"kind": "nonfinite"})


def test_thresholds_overrides_and_errors():
    th = Thresholds.of(vanish_ratio=1e-3, window=7.0)
    assert th.vanish_ratio == 1e-3 and th.window == 7 and type(th.window) is int
    assert repr(th) == "Thresholds(window=7, vanish_ratio=0.001)"
    assert repr(Thresholds()) == "Thresholds(defaults)"
    with pytest.raises(ValueError, match=r"unknown thresholds \['vanish'\]; allowed: window, "):
        Thresholds.of(vanish=1)
    with pytest.raises(ValueError, match="threshold window=2.5 must be a whole number"):
        Thresholds.of(window=2.5)
    with pytest.raises(ValueError, match="threshold dead_frac=-1 must be a positive number"):
        Thresholds.of(dead_frac=-1)


def test_thresholds_parse_types_values_like_the_default():
    th = Thresholds.parse(["vanish_ratio=1e-3", " window = 3 "])
    assert th.vanish_ratio == 1e-3 and th.window == 3
    with pytest.raises(ValueError, match=r"--set 'window=3.5': '3.5' is not a int \(default 5\)"):
        Thresholds.parse(["window=3.5"])
    with pytest.raises(ValueError, match="must be name=value with name one of: window, "):
        Thresholds.parse(["vanish_ratio"])


def test_every_threshold_has_a_source_comment():
    import inspect

    from gradprobe.diagnose import thresholds

    lines = inspect.getsource(thresholds.Thresholds).splitlines()
    names = Thresholds.names()
    at = [
        next(k for k, line in enumerate(lines) if line.strip().startswith(f"{n}:")) for n in names
    ]
    for name, i, prev in zip(names, at, [0, *at[:-1]]):
        above = [line.strip() for line in lines[prev + 1 : i]]
        assert "#" in lines[i] or any(line.startswith("#") for line in above), name
