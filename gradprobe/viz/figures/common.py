"""Shared helpers of the figures: axes, checks, layer and step choice, clipping, colours.

Conventions every figure follows:
- NaN in a Record means "not measured": it is left as a gap, never drawn as a value;
- +inf (an explosion) is clipped to the largest finite value drawn and marked with a red
  triangle (gid "inf"); on a log axis, values <= 0 are clipped to the smallest positive
  value drawn and marked with a triangle pointing down (gid "nonpositive"), so nothing
  non-finite is dropped silently;
- the first non-finite step of the run is a dotted red vertical line (gid "first_nonfinite").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib import cm, colormaps, colors, ticker
from matplotlib.axes import Axes
from matplotlib.figure import Figure

# A legend for up to this many layers; beyond, a colour-by-depth colorbar: a legend with
# more entries covers the plot it explains.
MAX_LEGEND = 10
# Log scale where finite positive values span more than this many decades (issue 5: "log
# scales where magnitudes span decades"); a narrower range reads better on a linear axis.
LOG_DECADES = 2.0
# Layer names as tick labels up to this many layers; beyond, they overlap: layer indices.
MAX_NAMED_TICKS = 30
# Bars up to this many layers; beyond, each is thinner than a pixel of the report's figure,
# and one filled step outline per series (matplotlib's stairs) draws the same picture as
# one artist instead of one rectangle per layer (and a small SVG).
MAX_BARS = 100
# Inches: about 700 x 400 pixels at the report's 100 dpi.
FIGSIZE = (7.0, 4.0)
DEPTH_CMAP = "viridis"  # perceptually uniform, readable in grey: depth reads as lightness
DEPTH_CMAP_MIDDLE = "#21918c"  # viridis(0.5): one colour for many layers' bars

# A legend right of the axes: lines of every layer leave no free corner inside.
OUTSIDE = dict(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))

# Artists that keep a legend entry when layers are keyed by a colorbar instead.
KEYED = ("inf", "nonpositive", "nonfinite", "first_nonfinite")

MARKS = {
    "inf": dict(marker="^", color="red", label="inf (clipped to the largest finite value)"),
    "nonpositive": dict(
        marker="v", color="black", label="<= 0 (clipped to the smallest positive value)"
    ),
    "nonfinite": dict(marker="x", color="red", label="non-finite (at the largest finite value)"),
}

# Axis labels: the Record's quantity name (DESIGN.md, "Quantities") and what it measures.
SYMBOLS = {
    "delta_norm": "||dC/dz||, learning speed",
    "grad_norm": "||dC/dW||",
    "bias_grad_norm": "||dC/db||",
    "grad_abs_mean": "mean |dC/dW|",
    "grad_abs_max": "max |dC/dW|",
    "weight_norm": "||W||",
    "update_norm": "||W_t - W_t-1||",
    "update_ratio": "||W_t - W_t-1|| / ||W||",
    "weight_change_mean": "mean |W_t - W_t-1|",
    "saturated_frac": "fraction of units in the flat tails",
    "dead_frac": "fraction of units at zero for the whole batch",
    "delta_norm_t": "||dC/dh_t||",
}


def quantity_label(quantity: str) -> str:
    """The axis label of a quantity: its name, then what it is, e.g. "grad_norm (||dC/dW||)"."""
    symbol = SYMBOLS.get(quantity)
    return f"{quantity} ({symbol})" if symbol else quantity


def new_axes(ax: Axes | None = None, figsize: tuple[float, float] = FIGSIZE) -> Axes:
    """`ax`, or the axes of a new Figure (constrained layout) when `ax` is None."""
    if ax is not None:
        return ax
    return Figure(figsize=figsize, layout="constrained").add_subplot()


def finished(axes: Sequence[Axes]) -> Figure:
    """The Figure of `axes`, their data artists left out of its layout.

    Lines, patches, images and collections are clipped to their axes, so they never move
    the layout; leaving them out spares constrained layout a bounding box per artist
    (1,000 bars at 500 layers).
    """
    for ax in axes:
        for artist in (*ax.lines, *ax.patches, *ax.images, *ax.collections):
            artist.set_in_layout(False)
    return figure_of(axes[0])


def figure_of(ax: Axes) -> Figure:
    """The top-level Figure `ax` is drawn in (for an Axes in a SubFigure, its parent)."""
    fig = ax.figure
    while not isinstance(fig, Figure):
        fig = fig.figure  # SubFigure -> its parent
    return fig


def require(rec, quantity: str, hint: str = "") -> np.ndarray:
    """rec[quantity], array of shape (n_steps, n_layers); ValueError if absent or all NaN."""
    if quantity not in rec:
        raise ValueError(
            f"record has no {quantity!r} quantity{hint}; it has: {', '.join(rec.quantities)}"
        )
    values = rec[quantity]
    if np.isnan(values).all():
        raise ValueError(f"record's {quantity!r} is NaN everywhere: never measured{hint}")
    return values


def require_series(rec, name: str, hint: str = "") -> np.ndarray:
    """rec.series[name], array of shape (n_steps, n_layers, k); ValueError if absent or NaN."""
    series = rec.series
    if name not in series:
        held = ", ".join(series) or "none"
        raise ValueError(f"record has no {name!r} series{hint}; its series: {held}")
    values = series[name]
    if np.isnan(values).all():
        raise ValueError(f"record's {name!r} series is NaN everywhere: never measured{hint}")
    return values


def layer_indices(rec, layers: Sequence[str | int] | None) -> list[int]:
    """Column indices of `layers` (names or indices; None: all), in the order given."""
    names = rec.layers
    if layers is None:
        return list(range(len(names)))
    if isinstance(layers, (str, int)):
        layers = [layers]
    out = []
    for layer in layers:
        if isinstance(layer, str) and layer in names:
            out.append(names.index(layer))
        elif isinstance(layer, (int, np.integer)) and -len(names) <= layer < len(names):
            out.append(int(layer) % len(names))
        else:
            raise ValueError(f"layer {layer!r} is not in this record; its layers: {names}")
    return out


def step_index(rec, step: int) -> int:
    """The row of recorded step number `step`; ValueError naming the recorded range."""
    rows = np.flatnonzero(rec.steps == step)
    if rows.size == 0:
        steps = rec.steps
        held = f"{steps[0]}..{steps[-1]} ({len(steps)} steps)" if len(steps) else "none"
        raise ValueError(f"step={step!r} was not recorded; recorded steps: {held}")
    return int(rows[0])


def positive_range(values: np.ndarray) -> tuple[float, float] | None:
    """(min, max) of the finite positive entries of `values`, None when there are none."""
    good = values[np.isfinite(values) & (values > 0)]
    return (float(good.min()), float(good.max())) if good.size else None


def spans_decades(values: np.ndarray, decades: float = LOG_DECADES) -> bool:
    """True when the finite positive values span more than `decades` powers of ten."""
    span = positive_range(values)
    return span is not None and np.log10(span[1] / span[0]) > decades


def clip_log(values: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """`values` made drawable on a log axis, and where they were clipped.

    Returns:
        (plotted, marks): plotted is a copy with +inf set to the largest finite positive
        value and entries <= 0 (and -inf) set to the smallest (1.0 when there is none); NaN
        stays NaN. marks maps "inf" and "nonpositive" to boolean arrays of values' shape.
    """
    values = np.asarray(values, dtype=np.float64)
    lo, hi = positive_range(values) or (1.0, 1.0)
    marks = {"inf": np.isposinf(values), "nonpositive": ~np.isnan(values) & (values <= 0)}
    plotted = values.copy()
    plotted[marks["inf"]] = hi
    plotted[marks["nonpositive"]] = lo
    return plotted, marks


def clip_linear(values: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """`values` with +inf (-inf) set to the largest (smallest) finite value; marks as clip_log.

    -inf is marked "nonpositive" only when it is clipped; NaN stays NaN.
    """
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    marks = {"inf": np.isposinf(values), "nonpositive": np.isneginf(values)}
    plotted = values.copy()
    plotted[marks["inf"]] = hi
    plotted[marks["nonpositive"]] = lo
    return plotted, marks


def draw_marks(ax: Axes, x: np.ndarray, y: np.ndarray, marks: dict[str, np.ndarray]) -> None:
    """One marker artist per kind of clipping present (gid "inf" / "nonpositive")."""
    x = np.broadcast_to(x, y.shape)
    for kind, where in marks.items():
        if where.any():
            ax.plot(x[where], y[where], linestyle="none", gid=kind, zorder=5, **MARKS[kind])


def mark_first_nonfinite(ax: Axes, rec) -> None:
    """A dotted red vertical line at the step where a non-finite value first appeared."""
    info = rec.first_nonfinite()
    if info is None:
        return
    where = info["where"] + (f" at {info['layer']}" if info.get("layer") else "")
    label = f"first non-finite: step {info['step']} ({where})"
    ax.axvline(info["step"], color="red", linestyle=":", gid="first_nonfinite", label=label)


def depth_colours(indices: Sequence[int], n_layers: int) -> np.ndarray:
    """RGBA rows, one per layer index, coloured by depth over all `n_layers`."""
    return colormaps[DEPTH_CMAP](np.asarray(indices) / max(n_layers - 1, 1))


def depth_key(ax: Axes, n_drawn: int, n_layers: int) -> None:
    """A legend when `n_drawn` layers are few, else a colorbar of layer index (depth)."""
    if n_drawn <= MAX_LEGEND:
        ax.legend(**OUTSIDE)
        return
    norm = colors.Normalize(0, max(n_layers - 1, 1))
    mappable = cm.ScalarMappable(norm=norm, cmap=colormaps[DEPTH_CMAP])
    ax.figure.colorbar(mappable, ax=ax, label="layer index (0 = first layer)")
    handles = [h for h in ax.get_lines() if h.get_gid() in KEYED]
    if handles:
        ax.legend(handles=handles, **OUTSIDE)


def bar_baseline(heights: np.ndarray, log: bool) -> float:
    """Where filled stairs start: 0, or on a log axis (which has no 0) half the lowest bar."""
    positive = heights[np.isfinite(heights) & (heights > 0)]
    return float(positive.min()) / 2 if log and positive.size else 0.0


def layer_bars(ax: Axes, heights: np.ndarray, *, label: str, color, baseline: float, **style):
    """Bars of `heights`, array of shape (n_layers,), at x = 0..n_layers-1.

    Args:
        ax: where to draw.
        heights: the bar heights (NaN: no bar).
        label: the artist's label.
        color: one colour, or one per bar.
        baseline: where stairs start (see bar_baseline); bars start at 0.
        style: more bar keywords (width, alpha).

    Returns:
        a BarContainer, or beyond MAX_BARS layers a filled StepPatch whose
        get_data().values are the heights, in one colour (`color` when it is a single one).
    """
    x = np.arange(len(heights))
    if len(heights) <= MAX_BARS:
        return ax.bar(x, heights, color=color, label=label, **style)
    single = color if isinstance(color, str) else DEPTH_CMAP_MIDDLE
    edges = np.arange(len(heights) + 1) - 0.5
    return ax.stairs(
        heights, edges, baseline=baseline, fill=True, color=single, label=label,
        alpha=style.get("alpha"),
    )  # fmt: skip


def layer_ticks(ax: Axes, names: Sequence[str], axis: str = "x") -> None:
    """Ticks at 0..n-1 labelled by layer name when few, else by layer index."""
    target = ax.xaxis if axis == "x" else ax.yaxis
    if len(names) <= MAX_NAMED_TICKS:
        target.set_ticks(np.arange(len(names)), labels=list(names))
        if axis == "x":
            ax.tick_params(axis="x", labelrotation=90)
        target.set_label_text("layer (forward order)")
    else:
        target.set_major_locator(ticker.MaxNLocator(integer=True))
        target.set_label_text("layer index (forward order)")


def step_ticks(ax: Axes, steps: np.ndarray, axis: str = "x") -> None:
    """Ticks of an image whose columns (rows) are recorded steps, labelled by step number."""

    def label(position: float, _pos=None) -> str:
        i = int(round(position))
        return str(int(steps[i])) if 0 <= i < len(steps) and abs(position - i) < 1e-6 else ""

    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(ticker.MaxNLocator(integer=True, nbins=8))
    target.set_major_formatter(ticker.FuncFormatter(label))
    target.set_label_text("step (one column per recorded step)")
