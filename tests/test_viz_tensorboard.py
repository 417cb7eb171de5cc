"""TensorBoard export and live events: read back with TensorBoard's own EventAccumulator,
every scalar and histogram must equal the Record's value at that step and layer."""

from __future__ import annotations

import inspect
import re
import sys

import numpy as np
import pytest
import torch
from torch import nn

import gradprobe as gp
from gradprobe.viz.tensorboard import export_tensorboard, hist_buckets

pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
from tensorboard.backend.event_processing.event_accumulator import (  # noqa: E402
    EventAccumulator,
)
from tensorboard.plugins.custom_scalar import layout_pb2  # noqa: E402

# the probe's edges, from their defining formula (gradprobe/stats/histogram.py)
EDGES = 10.0 ** np.linspace(-30, 10, 161)
N_BINS = len(EDGES) + 1


def _events(log_dir) -> EventAccumulator:
    acc = EventAccumulator(
        str(log_dir), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0}
    )
    return acc.Reload()


def _train(steps: int, **watch) -> gp.Record:
    """A tanh/ReLU MLP trained for `steps` SGD steps under gp.watch(**watch)."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3)
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gp.watch(model, opt, **watch) as probe:
        for _ in range(steps):
            x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            probe.log_loss(loss)
    return probe.record()


def assert_scalars_equal(acc: EventAccumulator, rec: gp.Record) -> int:
    """Every non-NaN value of the Record is an event at its step, and nothing else is."""
    expected = {
        f"{q}/{layer}": rec[q][:, i] for q in rec.quantities for i, layer in enumerate(rec.layers)
    }
    expected |= {f"step/{q}": v for q, v in rec.step_values.items()}
    expected = {tag: v for tag, v in expected.items() if not np.isnan(v).all()}
    assert sorted(acc.Tags()["scalars"]) == sorted(expected)
    for tag, column in expected.items():
        events = acc.Scalars(tag)
        kept = ~np.isnan(column)
        assert [e.step for e in events] == rec.steps[kept].tolist(), tag
        got = np.array([e.value for e in events])
        np.testing.assert_allclose(got, column[kept].astype(np.float32), rtol=1e-6, err_msg=tag)
    return sum(int((~np.isnan(v)).sum()) for v in expected.values())


def test_export_of_a_run_dir_equals_its_record(tmp_path):
    _train(12, run_dir=tmp_path / "run", flush_every=5, detail_every=3)
    rec = gp.load(tmp_path / "run")
    out = export_tensorboard(tmp_path / "run")
    assert out == tmp_path / "run" / "tb"
    n = assert_scalars_equal(_events(out), rec)
    # detail quantities are NaN on most steps: they must be left out, not written as NaN
    assert n < len(rec) * (len(rec.quantities) * len(rec.layers) + 2)
    assert np.isnan(rec["grad_abs_max"]).any() and not np.isnan(rec["grad_norm"]).any()


def test_live_events_during_training_equal_the_record(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    log_dir = tmp_path / "run" / "tb"
    with gp.watch(model, opt, run_dir=tmp_path / "run", tensorboard=True, flush_every=4) as probe:
        for step in range(10):
            x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            probe.log_loss(loss)
            if step == 5:  # one flush (steps 0-3) done: already on disk, while training
                live = _events(log_dir)
                assert [e.step for e in live.Scalars("grad_norm/0")] == [0, 1, 2, 3]
    rec = probe.record()
    assert len(rec) == 10
    assert_scalars_equal(_events(log_dir), rec)


def test_live_events_in_memory_mode_go_to_the_given_directory(tmp_path):
    rec = _train(6, tensorboard=tmp_path / "tb", flush_every=2)
    assert_scalars_equal(_events(tmp_path / "tb"), rec)


def test_resume_adds_events_and_overwrite_replaces_them(tmp_path):
    run = tmp_path / "run"
    _train(3, run_dir=run, tensorboard=True)
    rec = _train(2, run_dir=run, tensorboard=True, resume=True)
    assert rec.steps.tolist() == [0, 1, 2, 3, 4]
    assert_scalars_equal(_events(run / "tb"), rec)
    rec = _train(2, run_dir=run, tensorboard=True, overwrite=True)
    assert len(list((run / "tb").glob("events.out.tfevents.*"))) == 1
    assert_scalars_equal(_events(run / "tb"), rec)


def _synthetic(n_steps=5, layers=("a.0", "b"), seed=0) -> gp.Record:
    rng = np.random.default_rng(seed)
    grad_norm = rng.lognormal(size=(n_steps, len(layers)))
    grad_norm[1, 0] = np.nan  # not measured
    grad_norm[3, 1] = np.inf  # an explosion: kept
    grad_norm[4, 1] = -np.inf
    hist = rng.integers(0, 50, size=(n_steps, len(layers), N_BINS)).astype(float)
    hist[:, :, :40] = 0  # mass away from the ends, as in a real run
    hist[2] = np.nan  # not taken that step
    hist[0, 1] = 0  # nothing counted (e.g. no gradient): skipped
    hist[4, 0, 0] = 7  # zeros / underflow bin
    hist[4, 0, -1] = 3  # overflow bin
    return gp.Record(
        list(layers),
        np.arange(n_steps) * 10,
        {"grad_norm": grad_norm},
        step_values={"loss": rng.random(n_steps)},
        series={"grad_hist": hist},
    )


def test_inf_is_written_and_nan_skipped(tmp_path):
    rec = _synthetic()
    acc = _events(export_tensorboard(rec, tmp_path, hist_edges=EDGES))
    assert_scalars_equal(acc, rec)
    values = {e.step: e.value for e in acc.Scalars("grad_norm/b")}
    assert values[30] == np.inf and values[40] == -np.inf
    assert 10 not in {e.step for e in acc.Scalars("grad_norm/a.0")}


def assert_histograms_equal(acc: EventAccumulator, rec: gp.Record) -> None:
    """grad_hist/<layer> holds every taken, non-empty row of the series, in log10|g|."""
    limits = np.append(np.linspace(-30, 10, 161), 10.25)  # right edges; overflow 1/4 decade
    lefts = np.insert(limits[:-1], 0, -30.25)  # the underflow bin (zeros) 1/4 decade wide
    for i, layer in enumerate(rec.layers):
        hist = rec.series["grad_hist"][:, i]
        taken = ~np.isnan(hist).any(axis=1) & (np.nansum(hist, axis=1) > 0)
        events = acc.Histograms(f"grad_hist/{layer}") if taken.any() else []
        assert [e.step for e in events] == rec.steps[taken].tolist()
        for event, counts in zip(events, hist[taken]):
            h = event.histogram_value
            np.testing.assert_array_equal(h.bucket, counts)
            np.testing.assert_allclose(h.bucket_limit, limits, atol=1e-9)
            assert h.num == counts.sum()
            nonzero = np.flatnonzero(counts)
            assert (h.min, h.max) == pytest.approx((lefts[nonzero[0]], limits[nonzero[-1]]))


def test_histograms_equal_the_series_in_log10_space(tmp_path):
    rec = _synthetic()
    acc = _events(export_tensorboard(rec, tmp_path, hist_edges=EDGES))
    assert_histograms_equal(acc, rec)
    assert acc.Histograms("grad_hist/a.0")[-1].histogram_value.min == pytest.approx(-30.25)
    assert acc.Histograms("grad_hist/a.0")[-1].histogram_value.max == pytest.approx(10.25)


def test_live_histograms_of_a_training_run_equal_its_series(tmp_path):
    if "histograms" not in inspect.signature(gp.watch).parameters:
        pytest.skip("gp.watch has no histograms= option in this checkout")
    rec = _train(8, tensorboard=tmp_path, flush_every=3, histograms=2)  # default edges
    assert np.isnan(rec.series["grad_hist"][1::2]).all()
    assert np.nansum(rec.series["grad_hist"][::2]) > 0
    acc = _events(tmp_path)
    assert_histograms_equal(acc, rec)
    assert_scalars_equal(acc, rec)


def test_default_edges_are_the_probes():
    histogram = pytest.importorskip("gradprobe.stats.histogram")
    np.testing.assert_array_equal(histogram.HIST_EDGES, EDGES)
    lefts, rights = hist_buckets(histogram.HIST_EDGES)
    assert len(lefts) == histogram.N_BINS
    np.testing.assert_allclose(rights - lefts, 0.25, rtol=1e-9)


def test_custom_scalars_layout_has_one_chart_per_quantity_with_every_layer(tmp_path):
    rec = _train(3, run_dir=tmp_path / "run")
    acc = _events(export_tensorboard(tmp_path / "run"))
    layout = layout_pb2.Layout.FromString(
        acc.Tensors("custom_scalars__config__")[-1].tensor_proto.string_val[0]
    )
    charts = {c.title: c.multiline.tag for cat in layout.category for c in cat.chart}
    tags = acc.Tags()["scalars"]
    assert set(charts) == set(rec.quantities) | {"step/loss", "step/global_grad_norm"}
    for q in rec.quantities:
        (regex,) = charts[q]
        matched = sorted(t for t in tags if re.match(regex, t))
        assert matched == sorted(t for t in tags if t.split("/")[0] == q), q


def test_existing_events_are_refused_unless_overwrite(tmp_path):
    rec = _synthetic()
    export_tensorboard(rec, tmp_path, hist_edges=EDGES)
    with pytest.raises(FileExistsError, match="overwrite"):
        export_tensorboard(rec, tmp_path, hist_edges=EDGES)
    export_tensorboard(rec, tmp_path, overwrite=True, hist_edges=EDGES)
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 1
    with pytest.raises(FileExistsError, match="TensorBoard event file"):
        _train(2, tensorboard=tmp_path)


def test_bad_options_say_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match="needs a run_dir"):
        _train(1, tensorboard=True)
    with pytest.raises(TypeError, match="tensorboard=1 is not one of"):
        _train(1, tensorboard=1)
    with pytest.raises(ValueError, match="needs out="):
        export_tensorboard(_synthetic())


def test_without_tensorboard_the_error_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard.summary.writer.event_file_writer", None)
    with pytest.raises(ImportError, match=re.escape('pip install "gradprobe[tensorboard]"')):
        _train(1, run_dir=tmp_path / "run", tensorboard=True)
    assert not (tmp_path / "run").exists()  # refused before any run directory was made


def test_cli_command_writes_the_events(tmp_path):
    from typer.testing import CliRunner

    from gradprobe.cli import app

    rec = _train(3, run_dir=tmp_path / "run")
    result = CliRunner().invoke(
        app, ["tensorboard", str(tmp_path / "run"), "-o", str(tmp_path / "tb")]
    )
    assert result.exit_code == 0, result.output
    assert_scalars_equal(_events(tmp_path / "tb"), rec)
    again = CliRunner().invoke(
        app, ["tensorboard", str(tmp_path / "run"), "-o", str(tmp_path / "tb")]
    )
    assert again.exit_code == 2 and "--overwrite" in again.output
