"""Predicted vs measured in the HTML report and its figure (issue 7).

The oracle is `gradprobe.theory.compare(predict_run(run), record)`: the figure's plotted
arrays and the report's table (read back from its data-value attributes) must equal it.
"""

from __future__ import annotations

import io
import math
import warnings
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from typer.testing import CliRunner

import gradprobe as gp
from gradprobe import cli, viz
from gradprobe.lab.config import Experiment
from gradprobe.lab.theory_spec import lab_spec, predict_run
from gradprobe.lab.trainer import train
from gradprobe.theory import compare, predict
from gradprobe.viz.report import write_report
from gradprobe.viz.report_theory import BATCH_NOTE

torch.set_num_threads(1)
LAB = dict(seed=0, depth=3, width=32, activation="tanh", init="glorot_normal", steps=2)
COLUMNS = ("predicted", "measured", "diff", "tol")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tanh lab mlp (covered), a recurrent lab run and a plain gp.watch run (not)."""
    root = tmp_path_factory.mktemp("theory_report")
    train(Experiment(**LAB, limit_train=200), root / "tanh", progress=False)
    rnn = dict(
        seed=0, model="rnn", dataset="adding", seq_len=8, depth=1, width=8, steps=2, loss="mse"
    )
    train(Experiment(**rnn, activation="tanh", init="glorot_normal"), root / "rnn", progress=False)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gp.watch(model, opt, run_dir=root / "watch") as probe:
        for _ in range(2):
            opt.zero_grad()
            loss = model(torch.randn(16, 4)).pow(2).mean()
            loss.backward()
            opt.step()
            probe.log_loss(loss)
    return {name: root / name for name in ("tanh", "rnn", "watch")}


class TheoryTable(HTMLParser):
    """The theory tables of a report: run -> [(layer, parted, {quantity: value})]."""

    def __init__(self, html: str):
        super().__init__()
        self.tables: dict[str, list] = {}
        self._run = self._q = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and a.get("class") == "theory-table":
            self._run = a["data-run"]
            self.tables[self._run] = []
        elif tag == "tr" and self._run and "data-layer" in a:
            self.tables[self._run].append((a["data-layer"], a["data-parted"] == "true", {}))
        elif tag == "td" and self._run and "data-quantity" in a:
            self.tables[self._run][-1][2][a["data-quantity"]] = float(a["data-value"])

    def handle_endtag(self, tag):
        if tag == "table":
            self._run = None


def _gid(ax, gid):
    return next(a for a in (*ax.lines, *ax.collections) if a.get_gid() == gid)


def _parting_comparison():
    """fc2's measured delta off by +1 in ln norm^2: fc1 and fc2 part, fc3 not measured."""
    pred = predict(lab_spec("tanh", "glorot_normal", [64, 256, 256, 256, 256, 10]))
    dn = np.exp(pred["cum_log_gain"] / 2)[None, :].copy()
    dn[0, 1] *= math.exp(0.5)
    dn[0, 3] = np.nan
    with warnings.catch_warnings():  # compare's nanmean of the all-NaN pair: "empty slice"
        warnings.simplefilter("ignore", RuntimeWarning)
        return compare(pred, gp.Record(pred.layers, [0], {"delta_norm": dn}))


def test_figure_plots_the_comparisons_arrays():
    comp = _parting_comparison()
    assert comp.parted.tolist() == [True, True, False, False]
    ax = viz.predicted_vs_measured(comp).axes[0]
    np.testing.assert_array_equal(_gid(ax, "predicted").get_ydata(), comp.predicted)
    np.testing.assert_array_equal(_gid(ax, "measured").get_ydata(), comp.measured)
    assert np.isnan(_gid(ax, "measured").get_ydata()[2:]).all()  # not measured: a gap
    rings = _gid(ax, "parted")
    assert rings.get_xdata().tolist() == [0, 1]
    np.testing.assert_array_equal(rings.get_ydata(), comp.measured[:2])
    band = _gid(ax, "band").get_paths()[0].vertices  # fill_between: lower, then upper edge
    for i, edges in enumerate(zip(comp.predicted - comp.tol, comp.predicted + comp.tol)):
        np.testing.assert_allclose(np.unique(band[band[:, 0] == i, 1]), edges, rtol=1e-12)
    assert [t.get_text() for t in ax.get_xticklabels()] == comp.layers


def test_figure_renders_without_warnings_into_given_axes():
    comp = _parting_comparison()
    ax = Figure().add_subplot()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = viz.predicted_vs_measured(comp, ax=ax)
        for fmt in ("svg", "png"):
            fig.savefig(io.BytesIO(), format=fmt)
    assert fig is ax.figure
    with pytest.raises(TypeError, match="needs a gradprobe.theory.Comparison.*got dict"):
        viz.predicted_vs_measured({"predicted": [0.0]})


def test_report_table_equals_compare(runs, tmp_path):
    pred = predict_run(runs["tanh"])
    comp = compare(pred, gp.load(runs["tanh"]))
    html = write_report(runs["tanh"], tmp_path / "r.html", predictions=pred, figures=[])
    html = html.read_text()
    rows = TheoryTable(html).tables["run-1"]
    assert [r[0] for r in rows] == comp.layers == ["fc1", "fc2", "fc3"]
    for (_, parted, values), expected in zip(rows, comp.rows()):
        assert parted == expected["parted"]
        assert values == {q: expected[q] for q in COLUMNS}  # repr round-trips exactly
    assert comp.summary().replace("'", "&#39;") in html
    assert BATCH_NOTE.replace("'", "&#39;") in html
    assert "after training started" not in html  # step 0: the init the theory describes
    assert 'data-figure="predicted_vs_measured" data-format="svg"' in html
    assert pred.verdict()[:30] in html


def test_after_training_started_is_called_learned_alignment(runs, tmp_path):
    rec = gp.load(runs["tanh"])
    later = gp.Record(
        rec.layers, rec.steps[1:], {q: rec[q][1:] for q in rec.quantities},
        layer_info=rec.layer_info, meta=rec.meta,
    )  # fmt: skip
    pred = predict_run(rec)
    comp = compare(pred, later)
    assert comp.steps == [1]
    html = write_report(later, tmp_path / "r.html", predictions=pred, figures=[]).read_text()
    assert "Measured after training started (steps 1)" in html
    assert "learned an alignment" in html and "not a failure of the theory" in html
    values = TheoryTable(html).tables["run-1"][0][2]
    assert values["measured"] == comp.measured[0]


def test_runs_the_theory_does_not_cover_have_no_section(runs, tmp_path):
    dirs = [runs["rnn"], runs["watch"], runs["tanh"]]
    preds = [predict_run(d) for d in dirs]
    assert preds[0] is None and preds[1] is None and preds[2] is not None
    html = write_report(dirs, tmp_path / "r.html", predictions=preds, figures=[]).read_text()
    assert 'id="run-3-theory"' in html
    assert 'id="run-1-theory"' not in html and 'id="run-2-theory"' not in html
    assert list(TheoryTable(html).tables) == ["run-3"]


def test_a_prediction_that_cannot_be_compared_says_why(runs, tmp_path):
    pred = predict(lab_spec("tanh", "glorot_normal", [4, 8, 2]))  # fc1, fc2: not "0", "2"
    html = write_report(runs["watch"], tmp_path / "r.html", predictions=pred, figures=[])
    html = html.read_text()
    assert "Not compared with the measurement: the prediction&#39;s layers" in html
    assert not TheoryTable(html).tables


def test_bad_predictions_say_what_was_wrong(runs, tmp_path):
    with pytest.raises(TypeError, match=r"predictions\[0\] must be a gradprobe.theory"):
        write_report(runs["tanh"], tmp_path / "r.html", predictions="tanh")
    with pytest.raises(ValueError, match=r"predictions must hold one entry per run \(2 runs\)"):
        write_report([runs["tanh"], runs["rnn"]], tmp_path / "r.html", predictions=[None])


def test_cli_report_shows_the_prediction_and_survives_its_failure(runs, tmp_path, monkeypatch):
    from gradprobe.lab import theory_spec

    runner = CliRunner()
    out = tmp_path / "r.html"
    monkeypatch.setattr("gradprobe.viz.report.figure_names", lambda *args: [])
    result = runner.invoke(cli.app, ["report", str(runs["tanh"]), str(runs["rnn"]), "-o", str(out)])
    assert result.exit_code == 0 and result.stderr == "", result.output
    assert list(TheoryTable(out.read_text()).tables) == ["run-1"]

    def broken(run):
        raise RuntimeError("no\ntheory today")

    monkeypatch.setattr(theory_spec, "predict_run", broken)
    result = runner.invoke(cli.app, ["report", str(runs["tanh"]), "-o", str(out)])
    assert result.exit_code == 0 and f"report: {out}" in result.stdout
    assert result.stderr == (
        f"note: no prediction for {runs['tanh']}: RuntimeError: no theory today\n"
    )
    assert 'class="theory"' not in out.read_text()
