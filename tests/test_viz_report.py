"""write_report / `gradprobe report`: the HTML holds the Record's numbers, the findings, the
run's status at the top, a comparison for several runs, and nothing fetched from a network.

The oracle for the per-layer table is the Record itself (the last measured value of each
quantity, found here with plain numpy) and `gradprobe show`'s own formatting (cli.fmt).
"""

from __future__ import annotations

import base64
import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import gradprobe as gp
from gradprobe import cli
from gradprobe.diagnose.finding import Finding
from gradprobe.diagnose.report import payload, write_findings
from gradprobe.diagnose.thresholds import Thresholds
from gradprobe.viz.report import _shared_ylim, write_report
from gradprobe.viz.report_embed import svg_markup
from gradprobe.viz.report_run import TABLE_QUANTITIES
from tests.report_runs import train_run, train_trio

DEPTH, WIDTH, STEPS = 4, 8, 30


def _train(run_dir: Path, activation: type, steps: int = STEPS, interrupt_at: int | None = None):
    """A deep MLP on random data with gp.watch writing `run_dir`; optionally Ctrl-C."""
    kwargs = {"detail_every": 1, "histograms": 5}  # every figure has its data
    return train_run(run_dir, activation, steps=steps, interrupt_at=interrupt_at,
                     depth=DEPTH, width=WIDTH, **kwargs)  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return train_trio(tmp_path_factory.mktemp("runs"), _train)


@pytest.fixture(scope="module")
def nan_run(tmp_path_factory):
    """The lab trainer with a huge learning rate: the loss goes non-finite, status failed."""
    from gradprobe.lab.config import Experiment
    from gradprobe.lab.trainer import train

    exp = Experiment(
        seed=3, limit_train=100, depth=2, width=16, epochs=1, batch_size=10,
        activation="relu", init="he_normal", loss="quadratic", lr=1e4,
    )  # fmt: skip
    out = tmp_path_factory.mktemp("nan") / "nan"
    with pytest.warns(RuntimeWarning, match="first non-finite value"):
        assert train(exp, out, progress=False).status == "failed"
    return out


@pytest.fixture(scope="module")
def full_report(runs, tmp_path_factory):
    """The sigmoid run's report with every figure: (Record, its HTML)."""
    rec = gp.load(runs["sigmoid"])
    out = write_report(runs["sigmoid"], tmp_path_factory.mktemp("full") / "r.html")
    return rec, out.read_text()


class Page(HTMLParser):
    """The parts of the report the tests read: tables' cells, banners, findings, ids."""

    def __init__(self, html: str):
        super().__init__()
        self.cells: dict[str, list[tuple[str, str, str, str]]] = {}
        self.row_layers: dict[str, list[str]] = {}
        self.banners, self.kinds, self.ids, self.figures = [], [], [], []
        self.order: list[str] = []  # "banner", "findings", "layers" in document order
        self._table = self._layer = self._cell = None
        self._banner_depth = 0
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.ids += [a["id"]] if "id" in a else []
        self.figures += [a["data-figure"]] if "data-figure" in a else []
        if tag == "div" and (self._banner_depth or "data-status" in a):
            if not self._banner_depth:
                self.banners.append([a["data-status"], a["data-run"], ""])
                self.order.append("banner")
            self._banner_depth += 1
        elif tag == "table" and "layers" in (a.get("class") or "").split():
            self._table = a["data-run"] + ("#2" if a["data-run"] in self.cells else "")
            self.cells[self._table], self.row_layers[self._table] = [], []
            self.order.append("layers")
        elif tag == "tr" and self._table and "data-layer" in a:
            self._layer = a["data-layer"]
            self.row_layers[self._table].append(self._layer)
        elif tag == "td" and self._table and "data-quantity" in a:
            self._cell = [self._layer, a["data-quantity"], a["data-value"], ""]
        elif tag == "article" and "data-kind" in a:
            self.kinds.append(a["data-kind"])
        elif tag == "section" and "findings" in (a.get("class") or ""):
            self.order.append("findings")

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[3] += data
        if self._banner_depth:
            self.banners[-1][2] += data

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.cells[self._table].append(tuple(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None
        elif tag == "div" and self._banner_depth:
            self._banner_depth -= 1


def _last_measured(column: np.ndarray) -> float:
    return float(column[~np.isnan(column)][-1]) if (~np.isnan(column)).any() else float("nan")


def _check_table(page: Page, table: str, rec) -> None:
    assert page.row_layers[table] == rec.layers
    cells = page.cells[table]
    assert len(cells) == len(rec.layers) * len(TABLE_QUANTITIES)
    for layer, quantity, value, text in cells:
        expected = _last_measured(rec[quantity][:, rec.layers.index(layer)])
        np.testing.assert_equal(float(value), expected)  # repr round-trips a float exactly
        assert text == cli.fmt(expected)


def test_table_quantities_are_those_gradprobe_show_tabulates():
    assert TABLE_QUANTITIES == cli.SHOW_QUANTITIES


def test_table_equals_the_records_numbers(full_report):
    rec, html = full_report
    assert not np.isnan(rec["update_ratio"][-1]).any()  # every column has a value to check
    _check_table(Page(html), "run-1", rec)


def test_findings_of_diagnose_are_at_the_top_with_their_fix(full_report):
    rec, html = full_report
    findings = gp.diagnose(rec)
    assert "vanishing_gradient" in [f.kind for f in findings]  # deep sigmoid: it vanishes
    page = Page(html)
    assert page.kinds == [f.kind for f in findings]
    assert page.order[0] == "findings" and page.order.index("layers") > 0
    escape = __import__("html").escape
    for f in findings:
        assert escape(f.fix, quote=False) in html and escape(f.cause, quote=False) in html
    assert "gp.diagnose with the default thresholds" in html


def _touch(path: Path) -> None:
    """Make `path` the newest file of its directory, by a second.

    File times come from a coarse kernel clock: files written a millisecond apart can
    carry them in either order, so the test sets the order it means.
    """
    newest = max(p.stat().st_mtime_ns for p in path.parent.iterdir() if p != path)
    os.utime(path, ns=(newest + 10**9, newest + 10**9))


def _kinds(*args, **kwargs) -> list[str]:
    return Page(write_report(*args, figures=(), **kwargs).read_text()).kinds


def test_findings_json_is_used_when_newer_than_the_run(tmp_path):
    run = tmp_path / "run"
    _train(run, torch.nn.Sigmoid, steps=5)
    computed = [f.kind for f in gp.diagnose(gp.load(run))]
    stored = Finding("dead_units", ["2"], [0, 4], "warning", {"dead_frac": 0.75}, "c", "f")
    assert computed != ["dead_units"]
    write_findings(run, payload([stored], Thresholds()))
    _touch(run / "findings.json")  # diagnosed after the run ended
    assert _kinds(run, tmp_path / "a.html") == ["dead_units"]
    _touch(run / "run.json")  # the run changed after that
    assert _kinds(run, tmp_path / "b.html") == computed
    assert _kinds(run, tmp_path / "c.html", findings=[stored]) == ["dead_units"]


def test_nan_run_renders_and_says_where_at_the_top(nan_run, tmp_path):
    rec = gp.load(nan_run)
    bad = rec.first_nonfinite()
    assert rec.status == "failed" and bad is not None and bad["layer"] is not None
    page = Page(write_report(nan_run, tmp_path / "r.html", figures=["speed_lines"]).read_text())
    assert page.order[0] == "banner"
    status, _, text = page.banners[0]
    assert status == "failed" and "failed" in text
    assert f"step {bad['step']}, at layer {bad['layer']}" in text
    assert "nonfinite" in page.kinds
    _check_table(page, "run-1", rec)


def test_interrupted_and_running_runs_say_so(runs, tmp_path):
    rec = gp.load(runs["interrupted"])
    assert rec.status == "interrupted" and len(rec) == 12
    page = Page(write_report(runs["interrupted"], tmp_path / "i.html", figures=()).read_text())
    assert page.order[0] == "banner" and page.banners[0][0] == "interrupted"
    assert "12 steps recorded (step 0 to 11)" in page.banners[0][2]
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gp.watch(model, opt, run_dir=tmp_path / "live") as probe:
        for _ in range(3):
            opt.zero_grad()
            model(torch.randn(5, 3)).pow(2).mean().backward()
            opt.step()
        probe.flush()
        page = Page(write_report(tmp_path / "live", tmp_path / "l.html", figures=()).read_text())
    assert page.banners[0][0] == "running" and "still running" in page.banners[0][2]
    assert "3 steps recorded (step 0 to 2)" in page.banners[0][2]


def test_done_run_has_no_banner(runs, tmp_path):
    assert (
        Page(write_report(runs["relu"], tmp_path / "r.html", figures=()).read_text()).banners == []
    )


def test_several_runs_are_compared_side_by_side(runs, nan_run, tmp_path):
    dirs = [runs["sigmoid"], runs["relu"], nan_run]
    html = write_report(dirs, tmp_path / "r.html", figures=()).read_text()
    page = Page(html)
    assert 'id="comparison"' in html
    assert page.figures.count("compare-speed_bars") == 3
    assert [b[:2] for b in page.banners] == [["failed", "run-3"]]
    for i, run in enumerate(dirs, start=1):
        rec = gp.load(run)
        _check_table(page, f"run-{i}", rec)  # in the comparison
        _check_table(page, f"run-{i}#2", rec)  # in the run's own section
        assert f'data-compare="run-{i}"' in html
    # each run's findings once, in its own section, in the order of the runs
    assert page.kinds == [f.kind for run in dirs for f in gp.diagnose(gp.load(run))]


def test_comparison_bars_share_one_y_scale_and_range():
    from matplotlib.figure import Figure

    figs = []
    for top, scale in ((1e-5, "log"), (1e2, "linear")):
        ax = Figure().subplots()
        ax.bar([0, 1], [top / 100, top])
        ax.set_yscale(scale)
        figs.append(ax.figure)
    _shared_ylim(figs)
    (a,), (b,) = figs[0].axes, figs[1].axes
    assert a.get_yscale() == b.get_yscale() == "log"
    low, high = a.get_ylim()
    assert b.get_ylim() == (low, high) and low < 1e-7 and high > 1e2


def test_every_figure_is_embedded_with_unique_ids(full_report):
    from gradprobe.viz.figures import available

    rec, html = full_report
    page = Page(html)
    assert page.figures == [n for n in page.figures if n in available(rec)]
    assert set(page.figures) == set(available(rec)) >= {"speed_lines", "grad_histograms"}
    assert "Not drawn" not in html  # available() promised each one
    assert len(page.ids) == len(set(page.ids))  # several inline SVGs, no id shared
    for data in re.findall(r'src="data:image/png;base64,([^"]+)"', html):
        assert base64.b64decode(data).startswith(b"\x89PNG\r\n\x1a\n")
    for ref in re.findall(r'(?:href="#|url\(#)([^")]+)', html):
        assert ref in page.ids, ref


def test_svg_markup_prefixes_ids_and_drops_urls():
    svg = (
        '<?xml version="1.0"?>\n<!DOCTYPE svg PUBLIC "x" "http://www.w3.org/x.dtd">\n'
        '<svg xmlns:xlink="http://www.w3.org/1999/xlink" xmlns="http://www.w3.org/2000/svg">'
        '<metadata><rdf:RDF><cc:Work rdf:about="http://purl.org/x"/></rdf:RDF></metadata>'
        '<path id="m1"/><use xlink:href="#m1"/><g clip-path="url(#p2)"/></svg>'
    )
    out = svg_markup(svg, "r1f0-")
    assert out == (
        '<svg role="img"><path id="r1f0-m1"/><use href="#r1f0-m1"/>'
        '<g clip-path="url(#r1f0-p2)"/></svg>'
    )


NETWORK = re.compile(
    r"""(?:\b(?:src|href|action|poster|data)\s*=\s*["']?\s*(?:[a-z][a-z0-9+.-]*:)?//)"""
    r"""|url\(\s*["']?\s*(?:[a-z]+:)?//|@import|<script|<link|<iframe|<object|<embed""",
    re.I,
)


def test_no_network_url_and_user_text_is_escaped(runs, tmp_path):
    evil = "<script>alert(1)</script>"
    rec = gp.load(runs["relu"])
    values = {q: rec[q] for q in rec.quantities}
    hostile = gp.Record(
        [f"{name}{evil}" for name in rec.layers], rec.steps, values,
        step_values=rec.step_values, meta={**rec.meta, "name": evil, "config": {evil: evil}},
    )  # fmt: skip
    out = write_report(
        [hostile, runs["sigmoid"]], tmp_path / "r.html", title=evil, figures=["speed_lines"]
    )
    html = out.read_text()
    assert NETWORK.search(html) is None, NETWORK.search(html)
    assert evil not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert NETWORK.search('<img src="https://x.org/a.png">')  # the check can fail


def test_empty_run_renders(tmp_path):
    from gradprobe.record import RunDir

    with RunDir.create(tmp_path / "empty", config={"lr": 0.1}):
        pass
    html = write_report(tmp_path / "empty", tmp_path / "r.html").read_text()
    assert "No layer was recorded." in html and "nothing to diagnose" in html


def test_decision_surface_needs_data_and_is_drawn_with_it(runs, tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    x = np.random.default_rng(0).normal(size=(40, 2)).astype(np.float32)
    y = (x[:, 0] * x[:, 1] > 0).astype(np.int64)
    with pytest.raises(ValueError, match="needs data"):
        write_report(runs["relu"], tmp_path / "r.html", model=model)
    out = write_report(
        runs["relu"], tmp_path / "r.html", model=model, data=(x, y), figures=["decision_surface"]
    )
    assert "decision_surface" in Page(out.read_text()).figures


@pytest.mark.parametrize(
    "runs_arg, error, match",
    [
        ("missing", FileNotFoundError, "no run directory"),
        ("not_a_run", FileNotFoundError, "not a gradprobe run directory"),
        (3, ValueError, "runs must be"),
        ([], ValueError, "non-empty list"),
        ([3], TypeError, "got int"),
    ],
)
def test_bad_input_says_what_was_wrong(tmp_path, runs_arg, error, match):
    (tmp_path / "not_a_run").mkdir()
    if isinstance(runs_arg, str):
        runs_arg = tmp_path / runs_arg
    with pytest.raises(error, match=match):
        write_report(runs_arg, tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_findings_not_one_per_run_is_an_error(runs, tmp_path):
    with pytest.raises(ValueError, match=r"one entry per run \(2 runs\)"):
        write_report([runs["relu"], runs["sigmoid"]], tmp_path / "r.html", findings=[[]])


def test_cli_writes_the_report_and_fails_in_one_line(runs, tmp_path, monkeypatch):
    from gradprobe.viz import report

    monkeypatch.setattr(report, "figure_names", lambda *args: [])  # figures: tested above
    runner = CliRunner()
    result = runner.invoke(cli.app, ["report", str(runs["relu"])])
    assert result.exit_code == 0, result.output
    default = runs["relu"] / "report.html"
    assert default.is_file() and f"report: {default}" in result.stdout
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(cli.app, ["report", str(runs["relu"]), str(runs["sigmoid"])])
    assert result.exit_code == 0 and (tmp_path / "report.html").is_file()
    out = tmp_path / "sub" / "x.html"
    result = runner.invoke(cli.app, ["report", str(runs["relu"]), "-o", str(out)])
    assert result.exit_code == 0 and 'id="comparison"' not in out.read_text()
    result = runner.invoke(cli.app, ["report", str(tmp_path / "nope")])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == f"error: no run directory at {tmp_path / 'nope'}\n"


def test_meta_and_config_are_shown(full_report):
    rec, html = full_report
    assert "<td>activation</td><td>Sigmoid</td>" in html
    assert f"<td>versions</td><td>{json.dumps(rec.meta['versions'])}".replace('"', "&#34;") in html
