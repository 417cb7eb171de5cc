"""gradprobe.viz figures render without warnings at 1, 10 and 500 layers; explosions show.

Every figure is saved as PNG and SVG with warnings turned into errors; an exploding run
(inf and NaN) still renders with its inf values clipped and marked; missing data raises
ValueError saying what is missing; plotting stays out of `import gradprobe`.
"""

from __future__ import annotations

import io
import subprocess
import sys
import warnings

import numpy as np
import pytest
from matplotlib.figure import Figure

import gradprobe as gp
from gradprobe import viz
from tests.test_viz_figures import synthetic

RECORD_FIGURES = [n for n in viz.FIGURES if n not in ("decision_surface", "available")]


def render(fig: Figure) -> None:
    for fmt in ("png", "svg"):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, dpi=40)
        assert buffer.tell() > 0


def test_many_layers_get_a_depth_colorbar_and_few_a_legend():
    few, many = viz.speed_lines(synthetic(3)), viz.speed_lines(synthetic(40))
    assert len(few.axes) == 1 and few.axes[0].get_legend() is not None
    assert len(many.axes) == 2  # the colorbar's axes
    assert "layer index" in many.axes[1].get_ylabel()


def exploding(n_layers: int = 5) -> gp.Record:
    """A run whose last layer blows up: inf at row 4, the loss inf, then NaN."""
    rec = synthetic(n_layers, n_steps=6)
    values = {q: rec[q].copy() for q in rec.quantities}
    for q in ("delta_norm", "grad_abs_max", "grad_abs_mean", "weight_change_mean"):
        values[q][4, -1] = np.inf
    values["delta_norm"][5, -1] = np.nan
    values["grad_nonfinite"][4, -1] = 12.0
    loss = rec.loss.copy()
    loss[4], loss[5] = np.inf, np.nan
    series = rec.series
    series["delta_norm_t"] = series["delta_norm_t"].copy()
    series["delta_norm_t"][4, 0, 0] = np.inf
    series["grad_hist"] = series["grad_hist"].copy()
    series["grad_hist"][4, 1] = 0.0  # every |g| of net.1 non-finite: nothing counted
    meta = rec.meta
    meta["evaluation"][-1]["val_loss"] = None  # the trainer's JSON for a non-finite loss
    return gp.Record(
        rec.layers, rec.steps, values, step_values={"loss": loss}, series=series, meta=meta
    )


def marks_of(fig: Figure, kinds=("inf", "nonfinite")) -> list:
    return [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_gid() in kinds]


@pytest.mark.parametrize("n_layers", [1, 10, 500])
def test_every_figure_renders_without_warnings(n_layers):
    """At 10 layers, an exploding run: it renders too, and its inf values are marked."""
    rec = exploding(n_layers) if n_layers == 10 else synthetic(n_layers, n_steps=4)
    assert viz.available(rec) == RECORD_FIGURES
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in RECORD_FIGURES:
            fig = getattr(viz, name)(rec)
            assert isinstance(fig, Figure), name
            render(fig)
            if n_layers == 10 and name != "activation_health":  # fractions are finite
                assert marks_of(fig), f"{name} shows no mark for the inf values"


def test_inf_is_clipped_to_the_largest_finite_value_and_nan_left_a_gap():
    rec = exploding()
    ax = viz.speed_lines(rec).axes[0]
    top = np.nanmax(np.where(np.isfinite(rec["delta_norm"]), rec["delta_norm"], np.nan))
    (mark,) = marks_of(ax.figure)
    np.testing.assert_array_equal(mark.get_xdata(), [40])
    np.testing.assert_array_equal(mark.get_ydata(), [top])
    last = [ln for ln in ax.get_lines() if ln.get_gid() == "layer:net.4"][0].get_ydata()
    assert last[4] == top and np.isnan(last[5])
    (vline,) = [ln for ln in ax.get_lines() if ln.get_gid() == "first_nonfinite"]
    assert vline.get_xdata()[0] == 40 and "step 40" in vline.get_label()


def test_inf_cells_of_the_heatmap_hold_the_largest_finite_log10():
    rec = exploding()
    ax = viz.speed_heatmap(rec).axes[0]
    image = ax.images[0].get_array()
    finite = rec["delta_norm"][np.isfinite(rec["delta_norm"])]
    assert image[-1, 4] == pytest.approx(np.log10(finite.max()))  # layer net.4, row 4
    assert np.ma.getmaskarray(image)[-1, 5]  # NaN: masked, drawn grey
    (mark,) = marks_of(ax.figure)
    assert (mark.get_xdata()[0], mark.get_ydata()[0]) == (4, 4)  # column 4, row 4


def test_zeros_on_a_log_axis_are_clipped_and_marked():
    rec = gp.Record(["a", "b"], [0, 1], {"delta_norm": [[1e-3, 0.0], [1e-2, 1.0]]})
    ax = viz.speed_lines(rec).axes[0]
    (mark,) = marks_of(ax.figure, kinds=("nonpositive",))
    assert (mark.get_xdata()[0], mark.get_ydata()[0]) == (0, 1e-3)


@pytest.mark.parametrize("n_out", [1, 4])
def test_decision_surface_of_a_diverged_model_renders_and_says_so(n_out):
    torch = pytest.importorskip("torch")
    model = torch.nn.Linear(2, n_out)
    with torch.no_grad():
        model.weight[0, 0] = float("nan")  # output 0 is NaN everywhere (0 * nan is nan)
    x, y = torch.randn(30, 2), torch.randint(0, max(n_out, 2), (30,))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = viz.decision_surface(model, x, y, resolution=20)
        render(fig)
    image = fig.axes[0].images[0].get_array()
    assert np.ma.getmaskarray(image).all()
    assert "output non-finite on 100% of the grid" in fig.axes[0].get_title()


def test_figures_draw_into_a_given_axes():
    rec = synthetic(3)
    fig = Figure()
    axes = fig.subplots(1, 4)
    for ax, draw in zip(axes, (viz.speed_lines, viz.speed_bars, viz.speed_heatmap)):
        assert draw(rec, ax=ax) is fig
    assert viz.gradient_flow(rec, ax=axes[3]) is fig
    assert axes[0].get_lines() and axes[1].containers and axes[2].images


MISSING = [
    ("weight_change", {}, r"no 'weight_change_mean' quantity \(weight_change=True in gp.watch"),
    ("gradient_flow", {}, "no 'grad_abs_mean' quantity"),
    ("activation_health", {}, "no saturated_frac or dead_frac measurements"),
    ("grad_histograms", {}, r"no 'grad_hist' series: pass histograms=\.\.\. to gp.watch"),
    ("through_time", {}, "no 'delta_norm_t' series"),
    ("training_curves", {}, "neither per-epoch evaluations"),
    ("speed_lines", {"quantity": "update_ratio"}, "no 'update_ratio' quantity"),
    ("speed_bars", {"step": 7}, r"step=7 was not recorded; recorded steps: 0\.\.1"),
    ("speed_lines", {"layers": ["fc9"]}, r"layer 'fc9' is not in this record"),
]


@pytest.mark.parametrize(("name", "kwargs", "message"), MISSING)
def test_missing_data_raises_a_useful_value_error(name, kwargs, message):
    rec = gp.Record(["a"], [0, 1], {"delta_norm": [[1.0], [2.0]]})
    with pytest.raises(ValueError, match=message):
        getattr(viz, name)(rec, **kwargs)


def test_a_quantity_never_measured_raises():
    rec = gp.Record(["a"], [0, 1], {"delta_norm": [[np.nan], [np.nan]]})
    with pytest.raises(ValueError, match="'delta_norm' is NaN everywhere: never measured"):
        viz.speed_heatmap(rec)
    assert viz.available(rec) == []


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_viz_loads_matplotlib_only_for_figures_and_never_pyplot():
    # gradprobe.watch is left out (it loads torch, 2 s); test_imports checks it loads no
    # matplotlib
    code = (
        "import sys, gradprobe\n"
        "gradprobe.Record, gradprobe.load\n"
        "print('gradprobe.viz' in sys.modules, end=' ')\n"
        "import gradprobe.viz as viz\n"
        "viz.__all__, viz.FIGURES\n"
        "print('matplotlib' in sys.modules, end=' ')\n"
        "import numpy as np\n"
        "rec = gradprobe.Record(['a'], [0], {'delta_norm': [[1.0]]})\n"
        "viz.speed_lines(rec).savefig(__import__('io').BytesIO())\n"
        "print('matplotlib' in sys.modules, 'matplotlib.pyplot' in sys.modules)"
    )
    assert _run(code) == "False False True False"
