"""write_reproduction_report and published_vs_ours: the page holds the Reproduction's own
numbers, claims, notes and pictures, drawn from real run directories, and fetches nothing.

Oracles: the Rows themselves (published value, our values per seed; mean and sd found here
with plain numpy), the Checks and notes in order, the runs' Records (status, first
non-finite step) and the Sections' figure names; hostile text must come back escaped.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from markupsafe import escape

import gradprobe as gp
from gradprobe.lab.reproduce import Check, Reproduction, Row, Section, published
from gradprobe.viz.figures import published_vs_ours
from gradprobe.viz.figures.published import AGREE, DIFFER
from gradprobe.viz.report_reproduce import write_reproduction_report
from tests.browser import ARGS, CHROMIUM, assert_rendered_offline, load, measure_script
from tests.report_runs import train_run

EVIL = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
# As tests/test_viz_report.py: any attribute or CSS that would fetch from a network.
NETWORK = re.compile(
    r"""(?:\b(?:src|href|action|poster|data)\s*=\s*["']?\s*(?:[a-z][a-z0-9+.-]*:)?//)"""
    r"""|url\(\s*["']?\s*(?:[a-z]+:)?//|@import|<script|<link|<iframe|<object|<embed""",
    re.I,
)


def _rows(name: str, shift: float = 0.0, n: int = 3) -> list[Row]:
    """A Row per published figure of `name`: our values near it (per seed), some far."""
    pub = published(name)
    rng = np.random.default_rng(len(name))
    rows = []
    for i, key in enumerate(pub.figures):
        value = pub.value(key)
        ours = value * (1 + 0.05 * rng.standard_normal(n)) + (shift if i % 2 else 0.0)
        rows.append(Row.compare(pub.figure(key), ours, why=f"why {key}" if i % 2 else ""))
    return rows


def _reproduction(name: str, sections=(), **kwargs) -> Reproduction:
    pub = published(name)
    defaults = dict(
        settings={"epochs": 1, "n_train": 500},
        rows=_rows(name, shift=0.5),
        checks=[Check("c1", "first claim", True, "ours 1"), Check("c2", "second", False, "o2")],
        notes=["first note", "second note"],
    )
    return Reproduction(name, pub.title, pub.source, pub.url, (0, 1, 2), False,
                        sections=list(sections), **{**defaults, **kwargs})  # fmt: skip


def _failed_run(run_dir: Path) -> Path:
    """gp.watch on a net whose weight goes NaN at step 3; the loop then raises: failed."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Sigmoid(), torch.nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    with (
        pytest.raises(FloatingPointError),
        pytest.warns(RuntimeWarning, match="non-finite"),
        gp.watch(model, opt, run_dir=run_dir) as probe,
    ):
        for step in range(6):
            if step == 3:
                with torch.no_grad():
                    model[0].weight[0, 0] = float("nan")
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            probe.log_loss(loss)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is {loss.item()} at step {step}")
    return run_dir


def _surface_data():
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(2, 6), torch.nn.ReLU(), torch.nn.Linear(6, 2))
    x = np.random.default_rng(0).normal(size=(30, 2)).astype(np.float32)
    return model, (x, (x[:, 0] > 0).astype(np.int64))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return {
        "sigmoid": train_run(root / "sigmoid", torch.nn.Sigmoid, steps=8, depth=3, width=6),
        "relu": train_run(root / "relu", torch.nn.ReLU, steps=8, depth=3, width=6),
        "failed": _failed_run(root / "failed"),
        "missing": root / "no-such-run",
    }


@pytest.fixture(scope="module")
def page(runs, tmp_path_factory):
    """One page of two reproductions (as `reproduce("nielsen")` gives): (reps, HTML, path)."""
    model, data = _surface_data()
    sections = [
        Section(
            "Learning speed",
            "bars and lines",
            runs=(runs["sigmoid"], runs["relu"]),
            figures=("speed_bars", "speed_lines", "no_such_figure"),
        ),
        Section(
            "A run that failed", runs=(runs["failed"], runs["missing"]), figures=("speed_lines",)
        ),
        Section("Surface", model=model, data=data),
        Section("Chain", table=({"layer": "1", "dz": 0.25}, {"layer": "2", "dz": 0.0625, "db": 3})),
    ]
    reps = [_reproduction("nielsen-speed", sections), _reproduction("nielsen-depth")]
    path = write_reproduction_report(reps, tmp_path_factory.mktemp("page") / "sub" / "r.html")
    return reps, path.read_text(encoding="utf-8"), path


class Page(HTMLParser):
    """What the tests read back: the side-by-side cells per row key, claims, notes, the
    figures (<svg>/<img>) and figure names per (section, run), banners, section tables."""

    def __init__(self, html: str):
        super().__init__()
        self.cells: dict[str, dict[str, tuple[str, str]]] = {}  # key -> column -> (value, text)
        self.claims: list[tuple[str, str, str]] = []  # (key, data-holds, text)
        self.notes: list[str] = []
        self.ids: list[str] = []
        self.figures: dict[tuple[str, str], list[str]] = {}  # (section, run) -> svg / img
        self.names: dict[tuple[str, str], list[str]] = {}  # (section, run) -> data-figure
        self.banners: dict[str, str] = {}  # run -> banner level
        self.tables: dict[str, list[dict[str, str]]] = {}  # section -> rows of data-value
        self._section = self._run = self._key = self._cell = self._li = self._table = None
        self._text = ""
        self.feed(html)

    def _where(self) -> tuple[str, str]:
        return (self._section or "", self._run or "")

    def _container(self, tag: str, a: dict) -> None:
        if tag == "section" and "data-section" in a:
            self._section, self._run = a["data-section"], None
        elif tag == "div" and "data-run" in a:
            self._run = a["data-run"]
        elif tag == "table" and "section-table" in (a.get("class") or ""):
            self._table = a["data-section"]
            self.tables[self._table] = []
        elif tag == "tr" and "data-key" in a:
            self._key = a["data-key"]
            self.cells[self._key] = {"row": (a["data-agrees"], "")}
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append({})

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.ids += [a["id"]] if "id" in a else []
        self._container(tag, a)
        if tag in ("svg", "img"):
            self.figures.setdefault(self._where(), []).append(tag)
        if "data-figure" in a:
            self.names.setdefault(self._where(), []).append(a["data-figure"])
        if "data-banner" in a:
            self.banners[self._run] = a["data-banner"]
        if tag == "td" and "data-column" in a:
            self._cell, self._text = (a["data-column"], a.get("data-value", "")), ""
        if tag == "li" and ("data-check" in a or a.get("class") == "note"):
            self._li, self._text = (a.get("data-check"), a.get("data-holds")), ""

    def handle_data(self, data):
        self._text += data

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            column, value = self._cell
            if self._key is not None:
                self.cells[self._key][column] = (value, self._text)
            elif self._table is not None:
                self.tables[self._table][-1][column] = value
            self._cell = None
        elif tag == "tr":
            self._key = None
        elif tag == "table":
            self._table = None
        elif tag == "li" and self._li is not None:
            key, holds = self._li
            text = " ".join(self._text.split())
            if key:
                self.claims.append((key, holds, text))
            else:
                self.notes.append(text)
            self._li = None


# ---- published_vs_ours: the plotted data read back from the Axes equal the rows' values


def _lines(ax) -> dict[str, np.ndarray]:
    return {line.get_gid(): np.asarray(line.get_xdata(), float) for line in ax.lines}


def _check_axes(ax, rows: list[Row]) -> None:
    lines = _lines(ax)
    labels = [t.get_text().replace("\n", " ") for t in ax.get_yticklabels()]
    assert labels == [r.label for r in rows]
    for y, row in enumerate(rows):
        finite = np.array([v for v in row.values if np.isfinite(v)])
        mean, sd = finite.mean(), finite.std(ddof=1)
        np.testing.assert_array_equal(lines[f"published:{row.key}"], [row.published])
        np.testing.assert_array_equal(lines[f"seeds:{row.key}"], finite)
        np.testing.assert_allclose(lines[f"mean:{row.key}"], [mean], rtol=1e-12)
        np.testing.assert_allclose(lines[f"spread:{row.key}"], [mean - 2 * sd, mean + 2 * sd])
        line = next(line for line in ax.lines if line.get_gid() == f"mean:{row.key}")
        assert line.get_color() == (AGREE if row.agrees else DIFFER)
        assert line.get_ydata()[0] == pytest.approx(y + 0.14)  # row y, first row on top


def test_figure_plots_each_rows_values_one_axes_per_unit():
    speed, depth = _rows("nielsen-speed", shift=0.5), _rows("nielsen-depth", shift=5.0)
    assert {r.agrees for r in speed} == {r.agrees for r in depth} == {True, False}
    rep = _reproduction("nielsen-speed", rows=speed + depth)
    for given in (rep, rep.to_dict(), json.loads(json.dumps(rep.to_dict()))):
        fig = published_vs_ours(given)
        plain, percent = fig.axes
        _check_axes(plain, speed)
        _check_axes(percent, depth)
        assert percent.get_xlabel() == "value (%)" and plain.get_xlabel() == "value"
        # published 0.003 .. 0.31: two decades and more -> log; 96.5 % +- 5 -> linear
        assert plain.get_xscale() == "log" and percent.get_xscale() == "linear"
        assert plain.get_ylim() == (len(speed) - 0.5, -0.5)


def test_figure_clips_nonpositive_on_log_and_says_what_is_missing():
    fig = published("nielsen-speed").figure("784-30-30-10/hidden1")  # 0.07
    rows = [
        Row.compare(fig, [0.5, -0.1, 2.0]),  # spans decades, one value below 0
        Row.compare(fig, [0.001, float("nan"), 0.002]),
        Row.compare(fig, [float("nan")] * 3),
    ]
    ax = published_vs_ours(_reproduction("nielsen-speed", rows=rows)).axes[0]
    assert ax.get_xscale() == "log"
    lines = _lines(ax)
    floor = lines["seeds:784-30-30-10/hidden1"].min()
    assert floor == 0.001  # the smallest positive value drawn
    texts = {t.get_gid(): t.get_text() for t in ax.texts}
    assert "1 of 3 seeds without a value" in texts["missing:784-30-30-10/hidden1"]
    assert "no finite value" in texts["none:784-30-30-10/hidden1"]
    assert "nonpositive:784-30-30-10/hidden1" in lines
    assert all(np.all(x > 0) for x in lines.values())


def test_figure_bad_input_says_what_was_wrong():
    from matplotlib.figure import Figure

    rep = _reproduction("nielsen-speed", rows=_rows("nielsen-speed") + _rows("nielsen-depth"))
    with pytest.raises(ValueError, match="2 units"):
        published_vs_ours(rep, ax=Figure().subplots())
    ax = Figure().subplots()
    assert published_vs_ours(_reproduction("circles", rows=_rows("circles")), ax=ax) is ax.figure
    with pytest.raises(ValueError, match="no rows"):
        published_vs_ours(_reproduction("circles", rows=[]))
    with pytest.raises(TypeError, match="got int"):
        published_vs_ours(3)
    with pytest.raises(ValueError, match="row 0 .* has no published"):
        published_vs_ours({"rows": [{"key": "k", "label": "l", "values": [1], "agrees": 1}]})


# ---- the page


def test_table_cells_equal_the_rows(page):
    reps, html, _ = page
    cells = Page(html).cells
    rows = [r for rep in reps for r in rep.rows]
    assert list(cells) == [r.key for r in rows]
    for row in rows:
        got = cells[row.key]
        finite = np.array([v for v in row.values if np.isfinite(v)])
        assert float(got["published"][0]) == row.published
        assert float(got["mean"][0]) == pytest.approx(finite.mean(), rel=1e-12)
        assert float(got["sd"][0]) == pytest.approx(finite.std(ddof=1), rel=1e-12)
        assert got["n"][0] == str(len(finite))
        assert got["row"][0] == str(row.agrees).lower()
        assert got["agrees"][1] == ("yes" if row.agrees else "NO")
        assert got["reason"][1] == row.reason and got["why"][1] == row.why
    assert any(not r.agrees for r in rows) and any(r.agrees for r in rows)


def test_summary_source_claims_and_notes_in_order(page):
    reps, html, _ = page
    got = Page(html)
    assert got.claims == [
        (c.key, str(c.holds).lower(), ("holds " if c.holds else "FAILS ") + f"{c.claim} Ours: "
         f"{c.evidence}") for rep in reps for c in rep.checks
    ]  # fmt: skip
    assert got.notes == [n for rep in reps for n in rep.notes]
    for rep in reps:
        assert escape(rep.summary()) in html and escape(rep.source) in html
        assert f'<code class="url">{rep.url}</code>' in html
    assert NETWORK.search(html) is None, NETWORK.search(html)
    assert 'href="#rep-1"' in html and 'href="#rep-2"' in html  # contents of the two
    assert html.count('data-figure="published_vs_ours"') == 2


def test_sections_draw_the_named_figures_of_each_run(page, runs):
    _, html, _ = page
    got = Page(html)
    for run in ("sigmoid", "relu"):
        where = ("rep-1-s1", str(runs[run]))
        assert got.names[where] == ["speed_bars", "speed_lines", "no_such_figure"]
        assert len(got.figures[where]) == 2  # the unknown name is shown, not drawn
    assert html.count("Not drawn: No such figure: &#39;no_such_figure&#39; is not a") == 2
    assert len(got.ids) == len(set(got.ids))  # several inline SVGs, no id shared


def test_a_failed_run_shows_its_status_and_first_nonfinite_step(page, runs):
    _, html, _ = page
    got = Page(html)
    rec = gp.load(runs["failed"])
    bad = rec.first_nonfinite()
    assert rec.status == "failed" and bad["step"] == 3
    assert got.banners[str(runs["failed"])] == "failed"
    assert f"First non-finite value: step 3, at layer {bad['layer']}" in html
    assert len(got.figures[("rep-1-s2", str(runs["failed"]))]) == 1  # still drawn
    assert got.banners[str(runs["missing"])] == "unreadable"
    assert escape(f"no run directory at {runs['missing']}") in html


def test_surface_and_table_sections(page):
    _, html, _ = page
    got = Page(html)
    assert got.names[("rep-1-s3", "")] == ["decision_surface"]
    assert len(got.figures[("rep-1-s3", "")]) == 1
    assert got.tables["rep-1-s4"][1:] == [
        {"layer": "1", "dz": "0.25", "db": ""},
        {"layer": "2", "dz": "0.0625", "db": "3"},
    ]


def test_a_model_that_cannot_draw_its_surface_is_shown_not_raised(tmp_path):
    model = torch.nn.Linear(5, 2)  # the data is 2-D: the model fails on the grid
    x = np.zeros((4, 2), np.float32)
    section = Section("S", model=model, data=(x, np.array([0, 1, 0, 1])))
    rep = _reproduction("chain", [section], rows=[])  # no rows: no figure of them
    html = write_reproduction_report(rep, tmp_path / "r.html").read_text()
    assert "Not drawn: Decision surface: RuntimeError" in html


def test_the_dict_of_reproduction_json_renders_its_runs(runs, tmp_path):
    model, data = _surface_data()
    section = Section("S", runs=(runs["relu"],), figures=("speed_bars",), model=model, data=data)
    rep = _reproduction("circles", [section])
    data = json.loads(rep.to_json(tmp_path / "reproduction.json").read_text())
    html = write_reproduction_report(data, tmp_path / "r.html", title="T").read_text()
    assert len(Page(html).figures[("rep-1-s1", str(runs["relu"]))]) == 1
    assert "Not drawn: Decision surface: reproduction.json keeps no model" in html
    assert "<title>T</title>" in html


def test_hostile_text_is_escaped(runs, tmp_path):
    fig = published("chain").figure("sigmoid-prime-max")
    row = Row.compare(fig, [0.25, 0.26], why=EVIL)
    row = Row(**{**row.__dict__, "label": EVIL, "key": EVIL, "unit": EVIL})
    section = Section(EVIL, EVIL, runs=(runs["relu"],), figures=(EVIL,), table=({EVIL: EVIL},))
    rep = Reproduction(EVIL, EVIL, EVIL, f"https://x.org/{EVIL}", (0,), True,
                       settings={EVIL: EVIL}, rows=[row], checks=[Check(EVIL, EVIL, False, EVIL)],
                       notes=[EVIL], sections=[section])  # fmt: skip
    html = write_reproduction_report(rep, tmp_path / "r.html", title=EVIL).read_text()
    assert EVIL not in html and html.count(ESCAPED) > 10
    assert NETWORK.search(html) is None, NETWORK.search(html)
    assert NETWORK.search('<a href="https://x.org/a">')  # the check can fail


@pytest.mark.parametrize(
    "given, error, match",
    [
        (3, TypeError, "must be a Reproduction"),
        ([], ValueError, "empty"),
        ("nielsen", TypeError, "got str"),
        ("list", TypeError, r"reproductions\[1\] is not a Reproduction"),
        ({"rows": [], "sections": []}, ValueError, "has no name, title"),
    ],
)
def test_bad_input_says_what_was_wrong(tmp_path, given, error, match):
    if given == "list":
        given = [_reproduction("chain"), object()]
    with pytest.raises(error, match=match):
        write_reproduction_report(given, tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_written_atomically(page):
    _, _, path = page
    assert [p.name for p in path.parent.iterdir()] == ["r.html"]


# ---- in a real browser: headless Chromium (Debian's) driven by Playwright

MEASURE = measure_script("banner")


def test_page_renders_in_chromium(page, tmp_path):
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright (Python) is not installed: pip install playwright"
    )
    if not CHROMIUM.is_file():
        pytest.skip("Debian's chromium is not at /usr/bin/chromium (apt install chromium)")
    _, html, path = page
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            tab, problems, fetched = load(browser, path)
            found = tab.evaluate(MEASURE)
            tab.screenshot(path=str(tmp_path / "reproduce.png"), full_page=True)
        finally:
            browser.close()
    assert_rendered_offline(path, found, problems, fetched)
    assert len(found["svgs"]) + len(found["images"]) == html.count("<svg") + html.count("<img")
    assert len(found["svgs"]) + len(found["images"]) == 8  # 2 x 2 + 1 runs, surface, 2 tables
    assert found["banners"] == ["failed", "unreadable"]
    assert (tmp_path / "reproduce.png").stat().st_size > 10_000
