"""Figures into the report: drawn by `gradprobe.viz.figures`, embedded as inline SVG or PNG.

Line plots go in as inline SVG (sharp at any zoom, small); figures of many cells
(heatmaps, histograms over time) and any SVG that would be too large go in as a base64
PNG. Nothing the browser shows is fetched: no URL is left in the markup.
"""

from __future__ import annotations

import base64
import importlib
import io
import re
import sys
from dataclasses import dataclass
from typing import Any

# In the order the report shows them: learning speed first (Nielsen's picture of the
# problem), then where it comes from (weights, gradients, units), then the outcome.
FIGURE_TEXT = {
    "speed_lines": (
        "Learning speed per layer",
        "‖δˡ‖ = ‖∂C/∂zˡ‖ of each layer over training steps, log scale (Nielsen ch. 5). "
        "Layers decades apart learn at rates decades apart.",
    ),
    "speed_bars": (
        "Learning speed at one step",
        "‖δˡ‖ per layer, first layer on the left: early layers far below late ones is the "
        "vanishing gradient, far above is the exploding one.",
    ),
    "speed_heatmap": (
        "Learning speed, layer × step",
        "log10 ‖δˡ‖ per layer and step: the picture of a deep net, one row per layer.",
    ),
    "weight_change": (
        "Weight change per layer",
        "Mean |Wₜ − Wₜ₋₁| per layer and step, with the cost below: layers whose weights "
        "barely move are not learning.",
    ),
    "gradient_flow": (
        "Gradient flow",
        "Mean and max |∂C/∂W| per layer, log scale.",
    ),
    "activation_health": (
        "Activation health",
        "Fraction of saturated units (sigmoid, tanh in their flat tails) and of dead ones "
        "(ReLU at zero for the whole batch) per layer over steps.",
    ),
    "grad_histograms": (
        "Gradient histograms",
        "Distribution of |∂C/∂W| per layer over time, on fixed log-spaced bins.",
    ),
    "through_time": (
        "Gradient through time",
        "‖δ‖ at each time step of the recurrent layers: vanishing along time shows as a "
        "fall toward the first time steps.",
    ),
    "training_curves": (
        "Training curves",
        "Training and validation loss and accuracy.",
    ),
    "decision_surface": (
        "Decision surface",
        "The trained model's prediction over the plane of the 2-D data.",
    ),
}
# Figures of one coloured cell per (layer, step) or per bin: as SVG they hold one path
# per cell, tens of thousands for a real run; a PNG stays ~100 kB.
RASTER = frozenset({"speed_heatmap", "grad_histograms"})
# An SVG line plot of 500 layers x 1000 steps is several MB of path text; above this the
# figure is embedded as PNG instead, which keeps a report of a deep net viewable.
MAX_SVG_CHARS = 1_500_000
# Drawn points (line vertices, markers, bars) above which a figure goes straight to PNG:
# ~25 characters of SVG each, so this many is ~0.6 MB (measured: speed_lines of 500
# layers x 200 steps, 100k points, made 2.6 MB of SVG).
MAX_SVG_POINTS = 25_000
# 110 dpi: sharp on an ordinary screen at the report's width, small enough to embed.
# Both formats are saved with bbox_inches="tight": a title or legend wider than the axes
# (a long layer name) would otherwise be cut at the figure's edge.
PNG_DPI = 110

_PROLOG = re.compile(r"^.*?(?=<svg\b)", re.S)  # <?xml ...?> and <!DOCTYPE ...>
_METADATA = re.compile(r"\s*<metadata>.*?</metadata>", re.S)  # RDF: dates, URLs
_XMLNS = re.compile(r'\s+xmlns(?::xlink)?="[^"]*"')
_ID_REF = re.compile(r'(\bid="|href="#|url\(#)([^")]+)')


# Matplotlib's RDF block names the creator, type and format by URL; the report needs none.
_NO_METADATA = {"Creator": None, "Date": None, "Format": None, "Type": None}


@dataclass(frozen=True)
class Embedded:
    """One figure of the report.

    Attributes:
        name: the figure function's name, e.g. "speed_bars".
        title: heading shown above it.
        caption: what it shows, in a sentence.
        html: the inline <svg> or <img> markup; "" when the figure could not be drawn.
        kind: "svg", "png" or "missing".
        reason: why it is missing; "" otherwise.
    """

    name: str
    title: str
    caption: str
    html: str
    kind: str
    reason: str = ""

    def __repr__(self) -> str:
        size = f"{len(self.html)} chars" if self.html else self.reason
        return f"Embedded({self.name!r}, {self.kind}, {size})"


def figures_module():
    """`gradprobe.viz.figures`, the figure functions (imported on use: matplotlib)."""
    return importlib.import_module("gradprobe.viz.figures")


def svg_markup(svg: str, prefix: str) -> str:
    """Matplotlib's SVG document as an element to place inside HTML.

    Drops the XML prolog, the RDF metadata and the namespace declarations (HTML needs
    none of them, and they hold the only URLs), writes `xlink:href` as SVG 2's `href`,
    and prefixes every id and reference with `prefix`, so several figures in one page do
    not share ids.
    """
    svg = _METADATA.sub("", _PROLOG.sub("", svg, count=1), count=1)
    svg = _XMLNS.sub("", svg).replace("xlink:href=", "href=")
    svg = _ID_REF.sub(lambda m: f"{m.group(1)}{prefix}{m.group(2)}", svg)
    return svg.replace("<svg", '<svg role="img"', 1)


def _svg(fig: Any, prefix: str) -> str:
    import matplotlib

    buffer = io.StringIO()
    # fonttype none: text stays text (a tenth of the size of glyph paths, and selectable);
    # a fixed hash salt and no date make the output depend on the data alone.
    settings = {"svg.fonttype": "none", "svg.hashsalt": prefix}
    with matplotlib.rc_context(settings):
        fig.savefig(buffer, format="svg", metadata=_NO_METADATA, bbox_inches="tight")
    return svg_markup(buffer.getvalue(), prefix)


def png_markup(fig: Any, alt: str) -> str:
    """`fig` as an <img> holding a base64 PNG; width and height in CSS pixels."""
    from markupsafe import escape

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=PNG_DPI, bbox_inches="tight")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{data}">'


def n_points(fig: Any) -> int:
    """Points the figure draws: line vertices, scatter offsets and patches (bars)."""
    total = 0
    for ax in fig.axes:
        total += sum(len(line.get_xdata()) for line in ax.lines)
        total += sum(len(c.get_offsets()) + len(c.get_paths()) for c in ax.collections)
        total += len(ax.patches)
    return total


def embed(name: str, fig: Any, prefix: str) -> Embedded:
    """A drawn figure as markup: SVG unless it is a raster kind or too large."""
    title, caption = FIGURE_TEXT.get(name, (name.replace("_", " ").capitalize(), ""))
    try:
        if name not in RASTER and n_points(fig) <= MAX_SVG_POINTS:
            html = _svg(fig, prefix)
            if len(html) <= MAX_SVG_CHARS:
                return Embedded(name, title, caption, html, "svg")
        return Embedded(name, title, caption, png_markup(fig, title), "png")
    finally:
        _close(fig)


def missing(name: str, reason: str) -> Embedded:
    """A figure the record cannot draw, and why."""
    title, caption = FIGURE_TEXT.get(name, (name.replace("_", " ").capitalize(), ""))
    return Embedded(name, title, caption, "", "missing", reason)


def _close(fig: Any) -> None:
    # gradprobe's figures are plain Figures that pyplot never saw; only one made through
    # pyplot (which then is already imported) stays registered, in memory, until closed.
    # Importing pyplot here would load a GUI backend for nothing.
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None and getattr(fig.canvas, "manager", None) is not None:
        plt.close(fig)


def ordered(names: list[str]) -> list[str]:
    """`names` in the report's order: those of FIGURE_TEXT first, then the rest sorted."""
    known = [n for n in FIGURE_TEXT if n in names]
    return known + sorted(set(names) - set(FIGURE_TEXT))


def draw(rec: Any, names: list[str], prefix: str, model: Any = None, data: Any = None):
    """Draw and embed the figures `names` of one record.

    Args:
        rec: a Record.
        names: figure function names of `gradprobe.viz.figures`.
        prefix: unique per run, for the SVG ids.
        model: a trained torch module, for "decision_surface".
        data: (x, y) of the 2-D dataset, for "decision_surface".

    Returns:
        list of Embedded, in the report's order; a figure that raised ValueError (the
        record lacks its data) is kept as "missing" with the message.
    """
    module = figures_module()
    out = []
    for i, name in enumerate(ordered(names)):
        try:
            if name == "decision_surface":
                fig = module.decision_surface(model, *data)
            else:
                fig = getattr(module, name)(rec)
        except ValueError as err:
            out.append(missing(name, str(err)))
            continue
        out.append(embed(name, fig, f"{prefix}f{i}-"))
    return out
