"""`gradprobe reproduce`: the table printed, the JSON for machines, the report, bad input."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from gradprobe.cli import app
from gradprobe.lab.reproduce import published

runner = CliRunner(env={"COLUMNS": "100", "NO_COLOR": "1"})


@pytest.fixture(scope="module")
def chain_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce")
    result = runner.invoke(
        app, ["reproduce", "chain", "--seeds", "2", "-o", str(out), "--json", str(out / "t.json")]
    )
    return out, result


def test_reproduce_prints_the_table_beside_the_published_figures(chain_run):
    out, result = chain_run
    assert result.exit_code == 0, result.output
    pub = published("chain")
    doc = json.loads((out / "chain" / "reproduction.json").read_text())
    for row in doc["rows"]:
        line = next(ln for ln in result.output.splitlines() if ln.startswith(row["label"][:40]))
        assert line.split()[-1] == ("yes" if row["agrees"] else "NO")
        assert row["published"] == pub.value(row["key"])
    assert "published claims:" in result.output
    assert "seeds: 0, 1 (2)" in result.output


def test_reproduce_writes_the_same_table_as_json_and_a_report(chain_run):
    out, result = chain_run
    doc = json.loads((out / "t.json").read_text())
    assert doc["name"] == "chain" and len(doc["reproductions"]) == 1
    rep = doc["reproductions"][0]
    assert rep == json.loads((out / "chain" / "reproduction.json").read_text())
    for row in rep["rows"]:
        assert {"published", "mean", "spread", "n", "agrees", "reason"} <= set(row)
    assert rep["seeds"] == [0, 1] and rep["full"] is False
    page = (out / "chain-report.html").read_text()
    assert rep["title"] in page and "<svg" in page
    assert "report: " in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["reproduce", "nielsn"], "'nielsn' is not one of: nielsen, nielsen-speed"),
        (["reproduce", "chain", "--seeds", "0"], "seeds=0 must be at least 1"),
    ],
)
def test_reproduce_bad_input_is_one_line_and_exit_2(args, message, tmp_path):
    result = runner.invoke(app, [*args, "-o", str(tmp_path)])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
