"""gradprobe.viz figures: the plotted arrays, read back from the Axes, equal the Record's.

No golden images: each test draws a figure from a Record produced by a real probe run (or a
synthetic Record whose values are known) and compares what the artists hold (line data,
bar heights, image arrays) with the Record's arrays, or with an independent oracle (the
model evaluated on the grid, np.searchsorted for histogram bins).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.patches import StepPatch
from torch import nn

import gradprobe as gp
from gradprobe import viz
from gradprobe.viz.figures.histograms import hist_edges

N_BINS = 162  # len(HIST_EDGES) + 1
T = 7  # time steps of the synthetic recurrent layer


def hist_edges_formula() -> np.ndarray:
    """The histogram edges by their documented formula (4 bins per decade, 1e-30..1e10)."""
    return 10.0 ** np.linspace(-30, 10, 161)


def _on_detail(values: np.ndarray, detail: np.ndarray) -> np.ndarray:
    out = values.copy()
    out[~detail] = np.nan
    return out


def _series(rng, n_steps: int, n_layers: int, detail: np.ndarray) -> dict[str, np.ndarray]:
    hist = np.zeros((n_steps, n_layers, N_BINS))
    hist[:, :, 80:100] = rng.integers(1, 50, size=(n_steps, n_layers, 20))
    hist[:, :, 0] = 3  # exact zeros: the underflow bin
    delta_t = np.full((n_steps, n_layers, T), np.nan)
    delta_t[detail, 0] = 10.0 ** np.linspace(-3, 0, T)  # only layer 0 is recurrent
    delta_t[np.flatnonzero(detail)[0], 0, -2:] = np.nan  # a shorter sequence: NaN padding
    return {"grad_hist": _on_detail(hist, detail), "delta_norm_t": delta_t}


def synthetic(n_layers: int, n_steps: int = 6, *, seed: int = 0) -> gp.Record:
    """A Record with every quantity the figures draw, of known values.

    delta_norm falls 4 decades from the last layer to the first; detail quantities are
    measured on even rows only; saturated_frac on even layers, dead_frac on odd ones.
    """
    rng = np.random.default_rng(seed)
    detail = np.arange(n_steps) % 2 == 0
    depth = np.arange(n_layers)
    base = 10.0 ** (-4.0 * (n_layers - 1 - depth) / max(n_layers - 1, 1))  # (n_layers,)
    delta = base * (1 + 0.5 * rng.random((n_steps, n_layers)))
    saturated = _on_detail(rng.random((n_steps, n_layers)), detail)
    saturated[:, depth % 2 == 1] = np.nan
    dead = _on_detail(rng.random((n_steps, n_layers)), detail)
    dead[:, depth % 2 == 0] = np.nan
    values = {
        "delta_norm": delta,
        "grad_abs_mean": _on_detail(delta * 0.1, detail),
        "grad_abs_max": _on_detail(delta * 3, detail),
        "weight_change_mean": _on_detail(delta * 1e-2, detail),
        "saturated_frac": saturated,
        "dead_frac": dead,
        "grad_nonfinite": np.zeros((n_steps, n_layers)),
    }
    evaluation = [
        {"epoch": e, "step": 2 * e, "train_loss": 2.0 / e, "val_loss": 2.2 / e,
         "train_accuracy": 0.5 + 0.1 * e, "val_accuracy": 0.45 + 0.1 * e}
        for e in (1, 2, 3)
    ]  # fmt: skip
    return gp.Record(
        [f"net.{i}" for i in range(n_layers)],
        np.arange(n_steps) * 10,
        values,
        step_values={"loss": np.linspace(2.0, 0.5, n_steps)},
        series=_series(rng, n_steps, n_layers, detail),
        meta={"status": "done", "evaluation": evaluation},
    )


def real_run(histograms: bool = False) -> gp.Record:
    """5 SGD steps of a sigmoid/ReLU MLP under gp.watch, details on every other step."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(2, 8), nn.Sigmoid(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 1)
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x = torch.randn(32, 2)
    y = (x[:, 0] > 0).float()
    kwargs = {"histograms": 1} if histograms else {}
    with gp.watch(model, optimizer=opt, detail_every=2, **kwargs) as probe:
        for _ in range(5):
            opt.zero_grad()
            loss = nn.functional.binary_cross_entropy_with_logits(model(x)[:, 0], y)
            loss.backward()
            opt.step()
            probe.log_loss(loss)
    return probe.record()


@pytest.fixture(scope="module")
def rec() -> gp.Record:
    return real_run()


def layer_lines(ax) -> dict[str, object]:
    return {
        line.get_gid()[6:]: line
        for line in ax.get_lines()
        if (line.get_gid() or "").startswith("layer:")
    }


def assert_lines_match(ax, rec: gp.Record, values: np.ndarray, layers: list[str]) -> None:
    """One line per layer in `layers`: x = measured steps, y = the Record's values there."""
    lines = layer_lines(ax)
    assert list(lines) == layers
    rows = ~np.isnan(values).all(axis=1)
    for name, line in lines.items():
        np.testing.assert_array_equal(line.get_xdata(), rec.steps[rows])
        expected = values[rows, rec.layers.index(name)]
        np.testing.assert_array_equal(line.get_ydata(), expected)


# -- learning speed ----------------------------------------------------------------------
def test_speed_lines_are_delta_norm_per_layer(rec):
    ax = viz.speed_lines(rec).axes[0]
    assert_lines_match(ax, rec, rec["delta_norm"], rec.layers)
    assert ax.get_yscale() == "log"
    assert "delta_norm" in ax.get_ylabel()


def test_speed_lines_join_detail_steps_and_pick_layers():
    rec = synthetic(4)
    ax = viz.speed_lines(rec, "weight_change_mean", layers=["net.1", 3]).axes[0]
    assert_lines_match(ax, rec, rec["weight_change_mean"], ["net.1", "net.3"])
    assert len(layer_lines(ax)["net.1"].get_xdata()) == 3  # even rows only


def bar_heights(ax, label: str) -> np.ndarray:
    """Heights of the bars labelled `label`: a BarContainer's, or a StepPatch's values."""
    (bars,) = [c for c in ax.containers if c.get_label() == label] or [
        p for p in ax.patches if p.get_label() == label
    ]
    if isinstance(bars, StepPatch):  # beyond 100 layers, one outline for all the bars
        return bars.get_data().values
    return np.array([p.get_height() for p in bars.patches])


def test_speed_bars_mean_and_step(rec):
    ax = viz.speed_bars(rec).axes[0]
    np.testing.assert_allclose(bar_heights(ax, "layers"), rec["delta_norm"].mean(axis=0))
    assert "mean over 5 recorded steps" in ax.get_title()
    ax = viz.speed_bars(rec, step=3).axes[0]
    np.testing.assert_array_equal(bar_heights(ax, "layers"), rec["delta_norm"][3])
    assert "at step 3" in ax.get_title()


def test_speed_bars_mean_skips_unmeasured_steps_and_logs_wide_ranges():
    rec = synthetic(5)
    q = rec["weight_change_mean"]
    ax = viz.speed_bars(rec, quantity="weight_change_mean").axes[0]
    np.testing.assert_allclose(bar_heights(ax, "layers"), q[::2].mean(axis=0))
    assert "mean over 3 recorded steps" in ax.get_title()
    assert ax.get_yscale() == "log"  # 4 decades
    narrow = gp.Record(["a", "b"], [0], {"delta_norm": [[1.0, 50.0]]})
    assert viz.speed_bars(narrow).axes[0].get_yscale() == "linear"  # < 2 decades


def test_bars_of_many_layers_are_one_outline_with_the_same_heights():
    rec = synthetic(150)
    ax = viz.speed_bars(rec, step=20).axes[0]
    assert not ax.containers and len(ax.patches) == 1
    np.testing.assert_array_equal(bar_heights(ax, "layers"), rec["delta_norm"][2])
    ax = viz.gradient_flow(rec).axes[0]
    np.testing.assert_array_equal(bar_heights(ax, "max |dC/dW|"), rec["grad_abs_max"][4])


def test_speed_heatmap_is_log10_with_nan_masked():
    rec = synthetic(6)
    image = viz.speed_heatmap(rec, "weight_change_mean").axes[0].images[0].get_array()
    expected = np.log10(rec["weight_change_mean"]).T  # (n_layers, n_steps)
    assert image.shape == expected.shape
    np.testing.assert_array_equal(np.ma.getmaskarray(image), np.isnan(expected))
    np.testing.assert_allclose(image.filled(np.nan), expected)


def test_speed_heatmap_of_a_real_run(rec):
    image = viz.speed_heatmap(rec).axes[0].images[0].get_array()
    np.testing.assert_allclose(image.filled(np.nan), np.log10(rec["delta_norm"]).T)


# -- weight change, gradient flow, activation health -------------------------------------
def test_weight_change_lines_and_cost_below(rec):
    fig = viz.weight_change(rec)
    top, bottom = fig.axes[:2]
    assert_lines_match(top, rec, rec["weight_change_mean"], rec.layers)
    assert top.get_yscale() == "log"
    (loss,) = [line for line in bottom.get_lines() if line.get_gid() == "loss"]
    np.testing.assert_array_equal(loss.get_xdata(), rec.steps)
    np.testing.assert_array_equal(loss.get_ydata(), rec.loss)
    assert top.get_shared_x_axes().joined(top, bottom)


def test_gradient_flow_bars_at_the_last_detail_step(rec):
    ax = viz.gradient_flow(rec).axes[0]
    np.testing.assert_array_equal(bar_heights(ax, "mean |dC/dW|"), rec["grad_abs_mean"][4])
    np.testing.assert_array_equal(bar_heights(ax, "max |dC/dW|"), rec["grad_abs_max"][4])
    assert "step 4" in ax.get_title() and ax.get_yscale() == "log"
    ax = viz.gradient_flow(rec, step=2).axes[0]
    np.testing.assert_array_equal(bar_heights(ax, "mean |dC/dW|"), rec["grad_abs_mean"][2])
    with pytest.raises(ValueError, match="not measured at step 1"):
        viz.gradient_flow(rec, step=1)


def test_activation_health_draws_the_measured_layers(rec):
    top, bottom = viz.activation_health(rec).axes[:2]
    assert_lines_match(top, rec, rec["saturated_frac"], ["0"])  # the sigmoid layer
    assert_lines_match(bottom, rec, rec["dead_frac"], ["2"])  # the ReLU layer


# -- histograms, through time ------------------------------------------------------------
def hist_record(gradients: list[list[np.ndarray]], taken: list[bool]) -> gp.Record:
    """A Record whose grad_hist counts |g| of `gradients[step][layer]` by np.searchsorted."""
    edges = hist_edges_formula()
    n_steps, n_layers = len(gradients), len(gradients[0])
    counts = np.full((n_steps, n_layers, N_BINS), np.nan)
    for s, row in enumerate(gradients):
        for i, g in enumerate(row):
            if taken[s]:
                g = np.abs(g[np.isfinite(g)])
                counts[s, i] = np.bincount(np.searchsorted(edges, g, "right"), minlength=N_BINS)
    delta = np.ones((n_steps, n_layers))
    return gp.Record(
        ["a", "b"], np.arange(n_steps), {"delta_norm": delta}, series={"grad_hist": counts}
    )


def test_grad_histograms_show_fractions_per_bin():
    torch.manual_seed(1)
    grads = [[torch.randn(500).double().numpy() * 10.0**-k for k in (1, 4)] for _ in range(4)]
    grads[0][0][:7] = 0.0
    rec = hist_record(grads, taken=[True, False, True, True])
    fig = viz.grad_histograms(rec)
    images = {im.get_gid(): im.get_array() for ax in fig.axes for im in ax.images}
    assert set(images) == {"hist:a", "hist:b"}
    counts = rec.series["grad_hist"][[0, 2, 3]]  # steps with histograms
    held = np.flatnonzero(counts.sum(axis=(0, 1)) > 0)
    bins = np.concatenate([[0], np.arange(held[1], held[-1] + 1)])  # zeros, then a run
    for i, name in enumerate(rec.layers):
        fractions = counts[:, i] / counts[:, i].sum(axis=1, keepdims=True)
        expected = fractions[:, bins].T
        image = images[f"hist:{name}"]
        assert image.shape == expected.shape == (len(bins), 3)
        np.testing.assert_allclose(image.filled(0.0), expected)
        np.testing.assert_array_equal(np.ma.getmaskarray(image), expected == 0)
    assert images["hist:a"][0, 0] == pytest.approx(7 / 500)  # the exact zeros of step 0


def test_grad_histograms_use_the_stats_edges():
    from gradprobe.stats.histogram import HIST_EDGES

    np.testing.assert_array_equal(HIST_EDGES, hist_edges_formula())
    np.testing.assert_array_equal(hist_edges(), HIST_EDGES)


def test_grad_histograms_of_a_real_run():
    rec = real_run(histograms=True)
    counts = rec.series["grad_hist"]
    fig = viz.grad_histograms(rec, layers=["2"])
    (image,) = [im.get_array() for ax in fig.axes for im in ax.images]
    totals = counts[:, 1].sum(axis=1)
    assert (totals == 8 * 8 + 8).all()  # every weight and bias gradient element counted
    assert image.filled(0.0).sum(axis=0) == pytest.approx(np.ones(len(rec.steps)))


def test_through_time_lines_are_the_series_rows():
    rec = synthetic(3)
    series = rec.series["delta_norm_t"][:, 0]  # layer net.0
    ax = viz.through_time(rec).axes[0]
    lines = {line.get_gid(): line for line in ax.get_lines() if line.get_gid()}
    assert list(lines) == ["step:0", "step:20", "step:40"]
    for row, line in zip((0, 2, 4), lines.values()):
        np.testing.assert_array_equal(line.get_xdata(), np.arange(T))
        np.testing.assert_array_equal(line.get_ydata(), series[row])
    ax = viz.through_time(rec, layer="net.0", step=20).axes[0]
    (line,) = [ln for ln in ax.get_lines() if ln.get_gid() == "step:20"]
    assert ax.get_yscale() == "log"
    with pytest.raises(ValueError, match="not measured for layer 'net.1'"):
        viz.through_time(rec, layer="net.1")


def test_through_time_of_a_real_rnn():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn, self.head = nn.RNN(3, 5, batch_first=True), nn.Linear(5, 1)

        def forward(self, x):
            return self.head(self.rnn(x)[0][:, -1])

    torch.manual_seed(0)
    net, x = Net(), torch.randn(4, 6, 3)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with gp.watch(net, optimizer=opt, detail_every=2) as probe:
        for _ in range(3):
            opt.zero_grad()
            net(x).pow(2).mean().backward()
            opt.step()
    rec = probe.record()
    ax = viz.through_time(rec).axes[0]
    lines = [ln for ln in ax.get_lines() if (ln.get_gid() or "").startswith("step:")]
    assert [ln.get_gid() for ln in lines] == ["step:0", "step:2"]
    for row, line in zip((0, 2), lines):
        np.testing.assert_array_equal(line.get_ydata(), rec.series["delta_norm_t"][row, 0])


# -- decision surface --------------------------------------------------------------------
def grid_centres(image) -> np.ndarray:
    """(n_rows * n_cols, 2) pixel centres of an AxesImage drawn with origin="lower"."""
    left, right, bottom, top = image.get_extent()
    n_rows, n_cols = image.get_array().shape
    xs = left + (np.arange(n_cols) + 0.5) * (right - left) / n_cols
    ys = bottom + (np.arange(n_rows) + 0.5) * (top - bottom) / n_rows
    gx, gy = np.meshgrid(xs, ys)
    return np.column_stack([gx.ravel(), gy.ravel()])


@pytest.mark.parametrize("head", ["logit", "sigmoid", "softmax3"])
def test_decision_surface_is_the_models_prediction(head):
    torch.manual_seed(0)
    n_out = 3 if head == "softmax3" else 1
    layers = [nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, n_out)]
    model = nn.Sequential(*layers, *([nn.Sigmoid()] if head == "sigmoid" else []))
    x = torch.randn(60, 2) * 3
    y = torch.randint(0, n_out if n_out > 1 else 2, (60,))
    ax = viz.decision_surface(model, x, y, resolution=25).axes[0]
    image = ax.images[0]
    assert image.get_array().shape == (25, 25)
    with torch.no_grad():
        out = model(torch.as_tensor(grid_centres(image), dtype=torch.float32)).double()
    if head == "logit":
        expected = torch.sigmoid(out[:, 0])
    else:
        expected = out[:, 0] if head == "sigmoid" else out.argmax(dim=1).double()
    np.testing.assert_allclose(image.get_array().ravel(), expected.numpy(), rtol=1e-6, atol=1e-9)
    for c in np.unique(y.numpy()):
        (points,) = [s for s in ax.collections if s.get_gid() == f"class:{c}"]
        np.testing.assert_allclose(points.get_offsets(), x[y == c].numpy(), rtol=1e-6)
    assert model.training  # restored after the eval-mode pass


def test_decision_surface_refuses_inputs_that_are_not_2d():
    model = nn.Linear(5, 1)
    with pytest.raises(ValueError, match=r"shape \(n_samples, 2\).*\(10, 5\)"):
        viz.decision_surface(model, torch.randn(10, 5), torch.zeros(10))
    with pytest.raises(ValueError, match="y must have shape"):
        viz.decision_surface(nn.Linear(2, 1), torch.randn(10, 2), torch.zeros(9))
    with pytest.raises(ValueError, match="output='odds' is not one of"):
        viz.decision_surface(nn.Linear(2, 1), torch.randn(10, 2), torch.zeros(10), output="odds")


# -- training curves, available ----------------------------------------------------------
def test_training_curves_of_a_lab_run():
    from gradprobe.lab.config import Experiment
    from gradprobe.lab.trainer import train

    exp = Experiment(seed=3, limit_train=60, depth=2, width=8, epochs=2, batch_size=20)
    rec = train(exp, progress=False).record
    evaluation = rec.meta["evaluation"]
    loss_ax, acc_ax = viz.training_curves(rec).axes
    lines = {ln.get_gid(): ln for ax in (loss_ax, acc_ax) for ln in ax.get_lines()}
    for key in ("train_loss", "val_loss", "test_loss", "train_accuracy", "val_accuracy"):
        np.testing.assert_array_equal(lines[key].get_xdata(), [r["epoch"] for r in evaluation])
        np.testing.assert_array_equal(lines[key].get_ydata(), [r[key] for r in evaluation])


def test_training_curves_fall_back_to_the_loss_per_step(rec):
    (ax,) = viz.training_curves(rec).axes
    (loss,) = [ln for ln in ax.get_lines() if ln.get_gid() == "loss"]
    np.testing.assert_array_equal(loss.get_ydata(), rec.loss)
    assert "no per-epoch evaluation" in ax.get_title()


def test_available_names_what_each_record_can_draw(rec):
    assert viz.available(rec) == [
        "speed_lines", "speed_bars", "speed_heatmap", "weight_change", "gradient_flow",
        "activation_health", "training_curves",
    ]  # fmt: skip
    full = viz.available(synthetic(3))
    assert full == [n for n in viz.FIGURES if n not in ("decision_surface", "available")]
    only_speed = gp.Record(["a"], [0, 1], {"delta_norm": [[1.0], [2.0]]})
    assert viz.available(only_speed) == ["speed_lines", "speed_bars", "speed_heatmap"]
