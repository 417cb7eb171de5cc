"""Gradient histograms over time per layer: where |g| sits, decade by decade, step by step.

rec.series["grad_hist"] is an array of shape (n_steps, n_layers, n_bins) of counts of |g|
in the fixed edges gradprobe.stats.histogram.HIST_EDGES (n_bins = len(edges) + 1: bin 0
holds |g| below the first edge, zeros included, the last bin |g| at or above the last edge);
rows of steps without histograms are NaN. Each panel is one layer: x the steps with
histograms, y the bins that hold any count, colour the fraction of the layer's values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps, colors, ticker
from matplotlib.figure import Figure

from gradprobe.stats.histogram import HIST_EDGES
from gradprobe.viz.figures.common import (
    FIGSIZE,
    finished,
    layer_indices,
    require_series,
    step_ticks,
)

HINT = ": pass histograms=... to gp.watch"
# Panels drawn when layers=None: more would be too small to read; the first and last
# layers are always among them.
MAX_PANELS = 9
PANEL_COLUMNS = 3
BINS_PER_DECADE = 4  # HIST_EDGES = 10 ** linspace(-30, 10, 161)
HIST_CMAP = "magma_r"  # dark = many values, white = none, like TensorBoard's densest bands
NONFINITE_MARK = dict(marker="x", color="red", label="all |g| non-finite (none counted)")


def hist_edges() -> np.ndarray:
    """The recorded histograms' fixed bin edges, gradprobe.stats.histogram.HIST_EDGES."""
    return np.asarray(HIST_EDGES, dtype=np.float64)


def check_grad_histograms(rec) -> np.ndarray:
    """rec.series["grad_hist"], checked against the edges; ValueError when missing or wrong."""
    counts = require_series(rec, "grad_hist", HINT)
    n_bins = len(hist_edges()) + 1
    if counts.shape[2] != n_bins:
        raise ValueError(
            f"grad_hist has {counts.shape[2]} bins per layer; HIST_EDGES gives {n_bins}"
        )
    return counts


def bin_label(i: int, edges: np.ndarray) -> str:
    """The range of bin i in |g|, e.g. "1e-05" (its lower edge), "< 1e-30", ">= 1e+10"."""
    if i <= 0:
        return f"< {edges[0]:.0e} (incl. 0)"
    if i >= len(edges):
        return f">= {edges[-1]:.0e}"
    return f"{edges[i - 1]:.0e}"


def default_layers(n_layers: int) -> list[int]:
    """Up to MAX_PANELS layer indices spread evenly from the first to the last."""
    if n_layers <= MAX_PANELS:
        return list(range(n_layers))
    return sorted(set(np.linspace(0, n_layers - 1, MAX_PANELS).round().astype(int).tolist()))


def shown_bins(block: np.ndarray) -> np.ndarray:
    """Bin indices to draw: the contiguous run of interior bins between the first and last
    with any count, after bin 0 (below the first edge) and before the last bin (at or above
    the last edge) when those hold counts.

    Args:
        block: counts of shape (n_hist_steps, n_drawn_layers, n_bins), NaN-free.
    """
    held = np.flatnonzero(block.sum(axis=(0, 1)) > 0)
    n_bins = block.shape[2]
    inner = held[(held > 0) & (held < n_bins - 1)]
    middle = np.arange(inner[0], inner[-1] + 1) if inner.size else inner
    ends = [held[held == 0], middle, held[held == n_bins - 1]]
    return np.concatenate(ends).astype(int)


def hist_image(counts: np.ndarray, bins: np.ndarray) -> np.ma.MaskedArray:
    """Fractions of shape (len(bins), n_hist_steps) from counts (n_hist_steps, n_bins).

    Each step's counts over all bins sum to 1; bins with no count are masked (blank).
    """
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        fractions = np.where(totals > 0, counts / np.maximum(totals, 1), 0.0)
    return np.ma.masked_less_equal(fractions[:, bins].T, 0.0)


def bin_ticks(bins: np.ndarray, n_bins: int, most: int = 6) -> np.ndarray:
    """Image rows to tick: bins starting at a power of ten (4 bins per decade), thinned to at
    most `most`, plus the underflow and overflow bins when shown."""
    inner = (bins > 0) & (bins < n_bins - 1)
    decades = np.flatnonzero(inner & ((bins - 1) % BINS_PER_DECADE == 0))
    decades = decades[:: max(1, math.ceil(len(decades) / most))]
    ends = np.flatnonzero(~inner)
    return np.union1d(decades, ends)


def _bin_axis(ax, bins: np.ndarray, edges: np.ndarray) -> None:
    def label(y: float, _pos=None) -> str:
        i = int(round(y))
        return bin_label(int(bins[i]), edges) if 0 <= i < len(bins) else ""

    ax.yaxis.set_major_locator(ticker.FixedLocator(bin_ticks(bins, len(edges) + 1)))
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(label))


def _panel(ax, counts: np.ndarray, bins: np.ndarray, steps: np.ndarray, norm) -> None:
    """One layer: counts of shape (n_hist_steps, n_bins) as an image; uncounted steps marked."""
    ax.imshow(
        hist_image(counts, bins),
        aspect="auto",
        interpolation="nearest",
        origin="lower",
        norm=norm,
        cmap=colormaps[HIST_CMAP],
    )
    empty = np.flatnonzero(counts.sum(axis=1) == 0)
    if empty.size:  # histograms taken, nothing counted: every |g| was non-finite
        top = np.full(empty.size, len(bins) - 0.5)
        ax.plot(empty, top, linestyle="none", gid="nonfinite", **NONFINITE_MARK)
    ax.tick_params(labelsize="x-small")


def _norm(block: np.ndarray) -> colors.LogNorm:
    # The smallest nonzero fraction is one value out of the largest total count.
    largest = max(float(block.sum(axis=2).max()), 1.0)
    return colors.LogNorm(vmin=1.0 / largest, vmax=1.0)


def grad_histograms(rec, layers: Sequence[str | int] | None = None) -> Figure:
    """Histograms of |dC/dW| over time, one panel per layer.

    Args:
        rec: a Record with series grad_hist (array of shape (n_steps, n_layers, n_bins)).
        layers: layer names or indices; None: all when there are at most 9, else 9
            spread from the first layer to the last.

    Returns:
        the Figure: one AxesImage per drawn layer (gid "hist:NAME") whose array, of shape
        (len(bins), n_hist_steps) with bins = shown_bins(counts of the drawn layers), is
        the fraction of the layer's counted |g| values in each bin at each step where
        histograms were taken (masked where 0). Steps where nothing was counted (every
        |g| non-finite) carry a red x (gid "nonfinite").
    """
    counts = check_grad_histograms(rec)
    edges = hist_edges()
    indices = default_layers(len(rec.layers)) if layers is None else layer_indices(rec, layers)
    taken = ~np.isnan(counts).all(axis=(1, 2))
    block = np.nan_to_num(counts[taken][:, indices])  # (n_hist_steps, n_drawn, n_bins)
    bins = shown_bins(block)
    if bins.size == 0:
        raise ValueError("grad_hist counted no |g| value in these layers: all were non-finite")
    n_cols = min(PANEL_COLUMNS, len(indices))
    n_rows = math.ceil(len(indices) / n_cols)
    fig = Figure(figsize=(FIGSIZE[0], 2.0 * n_rows + 0.8), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False, sharex=True, sharey=True).ravel()
    norm = _norm(block)
    for j, i in enumerate(indices):
        _panel(axes[j], block[:, j], bins, rec.steps[taken], norm)
        axes[j].images[0].set_gid(f"hist:{rec.layers[i]}")
        axes[j].set_title(rec.layers[i], fontsize="small")
        # tick labels on the outer panels only: the axes are shared
        axes[j].tick_params(labelleft=j % n_cols == 0, labelbottom=j + n_cols >= len(indices))
    for ax in axes[len(indices) :]:
        ax.set_visible(False)
    _bin_axis(axes[0], bins, edges)  # shared by every panel
    step_ticks(axes[0], rec.steps[taken])
    axes[0].set_xlabel("")
    fig.supxlabel("step (one column per step with histograms)", fontsize="small")
    fig.supylabel("|dC/dW| bin (lower edge)", fontsize="small")
    fig.colorbar(
        axes[0].images[0], ax=axes.tolist(), label="fraction of the layer's |g| in the bin"
    )
    drawn = f"{len(indices)} of {len(rec.layers)} layers"
    fig.suptitle(f"Gradient histograms over time: |dC/dW| per layer ({drawn})")
    return finished(axes)
