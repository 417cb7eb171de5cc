"""The reproduction frame: agreement rule, table, JSON, published data, seeds, registry."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import numpy as np
import pytest

from gradprobe.lab.reproduce import (
    EXPERIMENTS,
    NAMES,
    Check,
    Figure,
    Reproduction,
    Row,
    published,
    reproduce,
    resolve_seeds,
)
from gradprobe.lab.reproduce.published import names as published_names

FIG = Figure(key="net/hidden1", value=0.07, label="hidden layer 1", decimals=2)


def test_row_agrees_within_two_sd_of_the_seed_mean():
    values = [0.05, 0.06, 0.04, 0.075]
    row = Row.compare(FIG, values)
    mean, sd = np.mean(values), np.std(values, ddof=1)
    assert row.mean == pytest.approx(mean)
    assert row.spread == pytest.approx(sd)
    assert row.n == 4
    assert row.tolerance == pytest.approx(2 * sd)
    assert abs(0.07 - mean) <= 2 * sd and row.agrees
    # A tighter spread around the same mean no longer covers 0.07.
    tight = Row.compare(FIG, [0.050, 0.051, 0.049])
    assert not tight.agrees
    assert "sd" in tight.reason and "0.07" in tight.reason


def test_row_single_value_uses_the_printing_rounding():
    assert Row.compare(FIG, [0.0749]).agrees  # 0.07 printed to 2 decimals covers +-0.005
    assert not Row.compare(FIG, [0.0751]).agrees
    assert Row.compare(FIG, [0.0751], tolerance=0.01).agrees
    assert Row.compare(FIG, [0.0749]).spread == 0.0


def test_row_ignores_nan_runs_and_fails_when_all_are_nan():
    row = Row.compare(FIG, [0.07, math.nan, 0.071])
    assert row.n == 2 and row.agrees
    assert row.to_dict()["values"][1] is None
    none = Row.compare(FIG, [math.nan, math.nan])
    assert not none.agrees and none.n == 0 and "no finite value" in none.reason


@pytest.mark.parametrize(
    "kwargs, message",
    [({"values": []}, "no values"), ({"values": [1.0], "tolerance": -1}, "must be >= 0")],
)
def test_row_rejects_bad_input(kwargs, message):
    values = kwargs.pop("values")
    with pytest.raises(ValueError, match=message):
        Row.compare(FIG, values, **kwargs)


def _reproduction() -> Reproduction:
    pub = published("nielsen-speed")
    rows = [
        Row.compare(pub.figure("784-30-30-10/hidden1"), [0.05, 0.06, 0.07]),
        Row.compare(pub.figure("784-30-30-10/hidden2"), [0.20, 0.21, 0.22], why="a reason"),
    ]
    checks = [Check("earlier-slower", pub.claim("earlier-slower"), True, "ratio 0.2")]
    return Reproduction(
        "nielsen-speed", pub.title, pub.source, pub.url, (0, 1, 2), False,
        settings={"images": 1000}, rows=rows, checks=checks, notes=["unseeded original"],
    )  # fmt: skip


def test_table_sets_each_row_beside_the_published_value():
    rep = _reproduction()
    text = rep.table()
    assert all(len(line) <= 100 for line in text.splitlines())
    lines = [ln for ln in text.splitlines() if ln.startswith("[784,30,30,10]")]
    assert len(lines) == 2
    assert lines[0].split()[-1] == "yes" and lines[1].split()[-1] == "NO"
    assert "0.31" in lines[1] and "0.21" in lines[1]
    flat = " ".join(text.split())  # the summary is wrapped at 100 columns
    assert "1 of 2 published figures agree" in flat and "1 of 1 published claims hold" in flat
    assert "unseeded original" in flat and "a reason" in flat
    assert "0..2 (3)" in text


def test_json_holds_the_same_table(tmp_path):
    rep = _reproduction()
    doc = json.loads(rep.to_json(tmp_path / "r.json").read_text())
    assert [r["published"] for r in doc["rows"]] == [0.07, 0.31]
    assert doc["rows"][1]["mean"] == pytest.approx(0.21)
    assert doc["rows"][1]["spread"] == pytest.approx(0.01)
    assert doc["rows"][1]["n"] == 3 and doc["rows"][1]["agrees"] is False
    assert doc["checks"][0]["holds"] is True and doc["seeds"] == [0, 1, 2]
    assert doc["summary"] == rep.summary()


def test_published_data_cover_every_experiment_with_a_source():
    assert set(published_names()) == set(EXPERIMENTS)
    for name in EXPERIMENTS:
        pub = published(name)
        assert pub.source and pub.title and (pub.figures or pub.claims)
        for fig in pub.figures.values():
            assert math.isfinite(fig.value) and fig.label
    with pytest.raises(ValueError, match="is not one of: nielsen-speed"):
        published("nielsen-sped")
    with pytest.raises(KeyError, match="has no published figure"):
        published("circles").figure("nope")


# Published numbers with two or more printed decimals must never be typed into the code
# that computes ours as a number (docstrings may quote them; the setup's own constants,
# like 0.8 I in the chain, are allowed).
@pytest.mark.parametrize("name", ["nielsen-speed", "nielsen-depth", "circles"])
def test_published_values_are_not_typed_into_the_experiment_code(name):
    root = Path(__file__).resolve().parents[1] / "gradprobe" / "lab" / "reproduce"
    paths = sorted(root.glob(f"{EXPERIMENTS[name]}*.py"))
    assert paths, f"no module for {name}"
    numbers = {
        (path.name, node.value)
        for path in paths
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, float)
    }
    for fig in published(name).figures.values():
        if fig.decimals is None or fig.decimals < 2:
            continue
        typed = [where for where, value in numbers if value == fig.value]
        assert not typed, f"{fig.value} ({fig.key}) typed into {typed}"


def test_the_typed_number_check_can_fail():
    tree = ast.parse("x = 1\nspeed = 0.283  # a published value\n")
    found = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)]
    assert 0.283 in found and published("nielsen-speed").value("784-30-30-30-10/hidden3") == 0.283


def test_resolve_seeds():
    assert resolve_seeds(None, 3) == (0, 1, 2)
    assert resolve_seeds(2, 5) == (0, 1)
    assert resolve_seeds([4, 7], 5) == (4, 7)
    for bad, error, message in [
        (0, ValueError, "at least 1"),
        ([], ValueError, "empty"),
        ([1, 1], ValueError, "repeat"),
        ([-1], ValueError, "negative"),
        (["a"], TypeError, "not an integer"),
    ]:
        with pytest.raises(error, match=message):
            resolve_seeds(bad, 3)


def test_unknown_experiment_lists_the_names(tmp_path):
    with pytest.raises(ValueError, match="'circle' is not one of: nielsen, nielsen-speed"):
        reproduce("circle", out=tmp_path)
    assert NAMES[0] == "nielsen"


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_every_experiment_module_has_the_interface(name):
    from gradprobe.lab.reproduce.registry import module_for

    module = module_for(name)
    assert name == module.NAME
    assert 1 <= module.DEFAULT_SEEDS <= module.FULL_SEEDS
    assert callable(module.run)
