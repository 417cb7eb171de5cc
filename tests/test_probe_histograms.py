"""Gradient histograms (watch(histograms=...)): counts against numpy on autograd's gradients.

The oracle bins each gradient element with numpy.searchsorted against HIST_EDGES (what
the fixed edges promise), from the gradients autograd left in .grad at the steps the
schedule picks; every other step must be NaN.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import gradprobe as gp
from gradprobe.stats import histogram
from gradprobe.stats.histogram import HIST_EDGES, N_BINS, HistogramPlan, histogram_counts
from tests.test_probe_sync import MODELS, _train, host_reads  # noqa: F401 (a fixture)


def oracle(tensors: list[torch.Tensor]) -> np.ndarray:
    """Counts per bin of the finite |x| of all tensors together, shape (N_BINS,)."""
    a = np.abs(np.concatenate([t.detach().double().numpy().ravel() for t in tensors]))
    a = a[np.isfinite(a)]
    return np.bincount(np.searchsorted(HIST_EDGES, a, side="right"), minlength=N_BINS)


def layer_grads(model: nn.Module, name: str) -> list[torch.Tensor]:
    module = model.get_submodule(name)
    return [p.grad.clone() for p in module.parameters(recurse=False) if p.grad is not None]


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3), nn.Tanh(), nn.Flatten(), nn.Linear(48, 16, bias=False),
        nn.Sigmoid(), nn.Linear(16, 4),
    )  # fmt: skip
    with torch.no_grad():  # spread the gradients over many decades, down to underflow
        model[3].weight.mul_(1e-3)
        model[5].weight.mul_(1e4)
    return model


def _run(every, histograms, steps, **options):
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=1e-6)
    g = torch.Generator().manual_seed(1)
    grads = []
    with gp.watch(model, opt, every=every, histograms=histograms, **options) as probe:
        for _ in range(steps):
            x, y = torch.randn(5, 2, 6, 6, generator=g), torch.randint(0, 4, (5,), generator=g)
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            grads.append({n: layer_grads(model, n) for n in ("0", "3", "5")})
            opt.step()
    return probe.record(), grads


@pytest.mark.parametrize(("every", "histograms", "expected"), [(1, 3, [0, 3, 6]), (2, 2, [0, 4])])
def test_counts_equal_numpy_at_the_scheduled_steps(every, histograms, expected):
    rec, grads = _run(every, histograms, 8)
    hist = rec.series["grad_hist"]
    assert hist.shape == (len(rec.steps), 3, N_BINS)
    measured = [int(s) for s, row in zip(rec.steps, hist) if not np.isnan(row).all()]
    assert measured == expected  # an int n: every n-th recorded step
    for i, step in enumerate(rec.steps):
        if step not in expected:
            assert np.isnan(hist[i]).all()
            continue
        for column, name in enumerate(rec.layers):
            np.testing.assert_array_equal(hist[i, column], oracle(grads[step][name]))
    occupied = np.nansum(hist, axis=(0, 1)) > 0
    assert occupied.sum() >= 8 and occupied[0]  # many decades, and the underflow bin


def test_counts_sum_to_the_finite_gradient_elements():
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    bad = torch.zeros(16, 48)
    bad[0, :3] = torch.tensor([float("nan"), float("inf"), -float("inf")])
    model[3].weight.register_hook(lambda grad: grad + bad)  # 3 non-finite at layer "3"
    x, y = torch.randn(5, 2, 6, 6), torch.randint(0, 4, (5,))
    warns = pytest.warns(RuntimeWarning, match="first non-finite value at step 0, layer '3'")
    # detail_every=1: the exact non-finite counts are a detail-step quantity
    with warns, gp.watch(model, opt, histograms=1, detail_every=1) as probe:
        _train(model, opt, probe, x, y, 2)
    rec = probe.record()
    sizes = {"0": 3 * 2 * 9 + 3, "3": 16 * 48, "5": 16 * 4 + 4}
    finite = np.array([sizes[n] for n in rec.layers]) - rec["grad_nonfinite"]
    np.testing.assert_array_equal(rec.series["grad_hist"].sum(axis=2), finite)
    at = rec.layers.index("3")  # step 1: the NaN reached the weights, no finite gradient left
    assert rec["grad_nonfinite"][:, at].tolist() == [3, 768]
    assert rec.series["grad_hist"][:, at].sum(axis=1).tolist() == [765, 0]


def test_gradient_accumulation_and_no_optimizer():
    """Read after accumulation: two backward passes per step, ended by probe.step()."""
    model = _model()
    x, y = torch.randn(4, 2, 6, 6), torch.randint(0, 4, (4,))
    expected = []
    with gp.watch(model, histograms=1) as probe:
        for _ in range(2):
            model.zero_grad()
            for half in (slice(0, 2), slice(2, 4)):
                nn.functional.cross_entropy(model(x[half]), y[half]).backward()
            expected.append([oracle(layer_grads(model, n)) for n in ("0", "3", "5")])
            probe.step()
    np.testing.assert_array_equal(probe.record().series["grad_hist"], expected)


def test_amp_gradients_are_read_unscaled():
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**20)
    x, y = torch.randn(4, 2, 6, 6), torch.randint(0, 4, (4,))
    with gp.watch(model, opt, histograms=1) as probe:
        opt.zero_grad()
        scaler.scale(nn.functional.cross_entropy(model(x), y)).backward()
        scaler.unscale_(opt)
        expected = [oracle(layer_grads(model, n)) for n in ("0", "3", "5")]
        scaler.step(opt)
        scaler.update()
    np.testing.assert_array_equal(probe.record().series["grad_hist"][0], expected)


def test_run_directory_round_trip(tmp_path):
    """Flushes with and without a histogram step; gp.load gives the same series."""
    rec, _ = _run(1, 4, 9, run_dir=tmp_path / "run", flush_every=3)
    loaded = gp.load(tmp_path / "run")
    np.testing.assert_array_equal(loaded.steps, rec.steps)
    np.testing.assert_array_equal(loaded.series["grad_hist"], rec.series["grad_hist"])
    assert (~np.isnan(loaded.series["grad_hist"]).all(axis=(1, 2))).sum() == 3  # 0, 4, 8


def test_off_by_default_and_with_false():
    for value in (None, False):
        rec, _ = _run(1, value, 2)
        assert "grad_hist" not in rec.series


@pytest.mark.parametrize(
    ("value", "error", "says"),
    [
        (0, ValueError, "positive int"),
        (-5, ValueError, "positive int"),
        (True, ValueError, "does not say how often"),
        ("weekly", ValueError, "None or False"),
        (2.5, TypeError, "None or False"),
        ([10], TypeError, "callable"),
    ],
)
def test_bad_values_raise_before_a_run_dir_is_made(tmp_path, value, error, says):
    model = _model()
    opt = torch.optim.SGD(model.parameters())
    with pytest.raises(error, match="histograms=") as info:
        gp.watch(model, opt, histograms=value, run_dir=tmp_path / "r")
    assert says in str(info.value)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("every", [1, 10])
@pytest.mark.parametrize("name", list(MODELS))
def test_no_host_read_between_flushes_with_histograms(host_reads, name, every):  # noqa: F811
    build, shape = MODELS[name]
    torch.manual_seed(0)
    model = build()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(*shape), torch.randint(0, 5, (shape[0],))
    options = dict(every=every, detail_every=3, histograms=2, flush_every=1000, flush_secs=1e9)
    with gp.watch(model, opt, **options) as probe:
        _train(model, opt, probe, x, y, 2)
        host_reads.clear()
        _train(model, opt, probe, x, y, 25)
        assert dict(host_reads) == {}
        probe.flush()
        per_flush = dict(host_reads)
    assert set(per_flush) <= {"numpy"}
    assert per_flush["numpy"] == 2 + (name == "lstm")  # + the histogram ring
    hist = probe.record().series["grad_hist"]
    assert (~np.isnan(hist).all(axis=(1, 2))).sum() == len(range(0, 27, every * 2))


# -- the device function ---------------------------------------------------------------


def _edges_and_neighbours(dtype: torch.dtype) -> torch.Tensor:
    e = torch.tensor(HIST_EDGES).to(dtype)
    below, above = torch.tensor(-1.0, dtype=dtype), torch.tensor(1e30, dtype=dtype)
    return torch.cat([e, torch.nextafter(e, below), torch.nextafter(e, above)])


def test_edges_are_exact_in_float32_and_float64_and_nonfinite_is_left_out():
    special = torch.tensor([0.0, -0.0, float("nan"), float("inf"), -float("inf"), 1e-45, 3e38])
    tensors = [
        _edges_and_neighbours(torch.float32),
        -_edges_and_neighbours(torch.float64),
        special,
        torch.randn(40).half(),
        (torch.randn(40) * 1e20).bfloat16(),
    ]
    counts = histogram_counts(tensors, [0, 1, 2, 3, 3], 4).numpy()
    assert counts.dtype == np.float64 and counts.shape == (4, N_BINS)
    for row, parts in enumerate([tensors[:1], tensors[1:2], tensors[2:3], tensors[3:]]):
        np.testing.assert_array_equal(counts[row], oracle(parts))
    assert counts[2, 0] == 3 and counts[2, -1] == 1 and counts[2].sum() == 4


def test_chunks_and_stacked_groups_add_up(monkeypatch):
    monkeypatch.setattr(histogram, "CHUNK", 100)  # force every path through the chunking
    torch.manual_seed(0)
    tensors = [torch.randn(7, 37) * 10.0 ** torch.randint(-40, 12, (7, 37)) for _ in range(5)]
    tensors += [torch.randn(1000) * 1e-8, torch.randn(3)]
    layers = [0, 1, 0, 2, 1, 2, 0]
    plan = HistogramPlan(tensors, layers, 3)
    for _ in range(2):  # the plan's scratch and offsets are reused
        counts = plan.counts(tensors).numpy()
        for row in range(3):
            mine = [t for t, layer in zip(tensors, layers) if layer == row]
            np.testing.assert_array_equal(counts[row], oracle(mine))


def test_merging_steps_is_summing_counts():
    a, b = torch.randn(300) * 1e-5, torch.randn(200) * 1e3
    one = histogram_counts([a], [0], 1).numpy()
    two = histogram_counts([b], [0], 1).numpy()
    np.testing.assert_array_equal(histogram.merge_counts(one, two)[0], oracle([a, b]))
    nan = np.full_like(one, np.nan)
    np.testing.assert_array_equal(histogram.merge_counts(one, nan), one)
    assert np.isnan(histogram.merge_counts(nan, nan)).all()


def test_plan_rejects_bad_input():
    with pytest.raises(ValueError, match="outside 0..1"):
        HistogramPlan([torch.ones(3)], [2], 2)
    with pytest.raises(ValueError, match="2 tensors but 1 layer"):
        HistogramPlan([torch.ones(3), torch.ones(2)], [0], 1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_counts_without_synchronising():
    tensors = [_edges_and_neighbours(torch.float32).cuda(), torch.randn(5000, device="cuda")]
    plan = HistogramPlan(tensors, [0, 1], 2)
    plan.counts(tensors)  # tables made
    torch.cuda.set_sync_debug_mode("error")
    try:
        counts = plan.counts(tensors)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    for row, t in enumerate(tensors):
        np.testing.assert_array_equal(counts[row].cpu().numpy(), oracle([t.cpu()]))
