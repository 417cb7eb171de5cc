"""Published vs ours: each published figure of a reproduction beside our values over seeds.

One line per Row (the reproduction's side-by-side table): the published value as a
diamond, each seed's value of ours as a dot, our mean as a bar and mean +- 2 sd as a
line across it, coloured by the Row's verdict. Rows of different units go on separate
axes (a percentage next to a ratio would flatten one of them).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from gradprobe.viz.figures.common import finished, positive_range, spans_decades

# The spread drawn around our mean: K_SD of gradprobe's reproductions (Row.compare's
# default): about 95% of a normal seed-to-seed spread.
K_SD = 2.0
# The report's colours for "ok" and "error" (templates/report.html.j2, --ok and --error).
AGREE, DIFFER = "#067647", "#b42318"
# Our values sit a little above the row's centre, the published one a little below, so a
# diamond inside the spread stays visible (in units of one row's height).
OFFSET = 0.14
LABEL_WIDTH = 48  # characters of a row label per line; longer ones wrap
_REQUIRED = ("key", "label", "published", "values", "agrees")


def _row(entry: Any, i: int) -> dict[str, Any]:
    if not isinstance(entry, Mapping):
        raise TypeError(f"row {i} must be a mapping (Row.to_dict()); got {type(entry).__name__}")
    lacking = [k for k in _REQUIRED if k not in entry]
    if lacking:
        raise ValueError(f"row {i} ({entry.get('key', '?')!r}) has no {', '.join(lacking)}")
    values = np.array([math.nan if v is None else float(v) for v in entry["values"]])
    return {
        "key": str(entry["key"]),
        "label": str(entry["label"]),
        "unit": str(entry.get("unit") or ""),
        "published": float(entry["published"]),
        "values": values,
        "agrees": bool(entry["agrees"]),
    }


def rows_of(reproduction: Any) -> list[dict[str, Any]]:
    """The rows of a Reproduction (anything with `to_dict()`) or of its dict.

    Returns:
        one dict per row: key, label, unit, published (float), values (array of shape
        (n_seeds,), NaN where a seed gave none), agrees.

    Raises:
        TypeError: neither a mapping nor an object with to_dict(); a row not a mapping.
        ValueError: no "rows"; a row lacking one of key, label, published, values, agrees.
    """
    data = reproduction.to_dict() if hasattr(reproduction, "to_dict") else reproduction
    if not isinstance(data, Mapping):
        raise TypeError(
            f"expected a Reproduction (with to_dict()) or its dict; got {type(data).__name__}"
        )
    if "rows" not in data:
        raise ValueError(f"the reproduction has no 'rows'; its keys: {', '.join(map(str, data))}")
    return [_row(entry, i) for i, entry in enumerate(data["rows"])]


def spread(values: np.ndarray) -> tuple[float, float]:
    """(mean, sd with ddof=1; 0 for one value) of the finite `values`; NaN mean for none."""
    finite = values[np.isfinite(values)]
    if not finite.size:
        return math.nan, 0.0
    return float(finite.mean()), float(finite.std(ddof=1)) if finite.size > 1 else 0.0


def _groups(rows: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Rows grouped by unit, in the order each unit first appears."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["unit"], []).append(row)
    return list(groups.items())


def _all_values(rows: list[dict[str, Any]]) -> np.ndarray:
    parts = []
    for row in rows:
        mean, sd = spread(row["values"])
        parts.append([row["published"], *row["values"], mean - K_SD * sd, mean + K_SD * sd])
    return np.concatenate([np.asarray(p, dtype=float) for p in parts])


def _floor(values: np.ndarray) -> float:
    """The left end of a log axis: the smallest positive value drawn (1.0 when none)."""
    span = positive_range(values)
    return span[0] if span else 1.0


def _clipped(values: np.ndarray, floor: float | None) -> tuple[np.ndarray, bool]:
    """`values` raised to `floor` on a log axis (None: linear, unchanged); whether any was."""
    values = np.asarray(values, dtype=float)
    if floor is None:
        return values, False
    return np.maximum(values, floor), bool((values < floor).any())


def _draw_row(ax: Axes, row: dict[str, Any], y: float, floor: float | None) -> None:
    """One row at height y; `floor` clips values <= 0 on a log axis (None: linear)."""
    colour = AGREE if row["agrees"] else DIFFER
    key = row["key"]
    published, clip_pub = _clipped([row["published"]], floor)
    ax.plot(published, [y - OFFSET], linestyle="none", marker="D", markersize=7,
            markerfacecolor="white", markeredgecolor="black", gid=f"published:{key}")  # fmt: skip
    if clip_pub:
        _mark_clipped(ax, floor, y - OFFSET, key)
    finite = row["values"][np.isfinite(row["values"])]
    if not finite.size:
        ax.text(published[0], y + OFFSET, "  no finite value of ours", va="center",
                fontsize="small", color=DIFFER, gid=f"none:{key}")  # fmt: skip
        return
    mean, sd = spread(row["values"])
    ours, clip_ours = _clipped([mean - K_SD * sd, mean + K_SD * sd, mean, *finite], floor)
    ax.plot(ours[:2], [y + OFFSET] * 2, color=colour, linewidth=2, gid=f"spread:{key}")
    ax.plot(ours[2:3], [y + OFFSET], linestyle="none", marker="|", markersize=14,
            markeredgewidth=2.5, color=colour, gid=f"mean:{key}")  # fmt: skip
    ax.plot(ours[3:], np.full(finite.size, y + OFFSET), linestyle="none", marker="o",
            markersize=4.5, alpha=0.7, color=colour, gid=f"seeds:{key}")  # fmt: skip
    if clip_ours:
        _mark_clipped(ax, floor, y + OFFSET, key)
    n_missing = row["values"].size - finite.size
    if n_missing:
        ax.text(1.0, y, f" {n_missing} of {row['values'].size} seeds without a value",
                transform=ax.get_yaxis_transform(), fontsize="x-small", va="center",
                color=DIFFER, gid=f"missing:{key}")  # fmt: skip


def _mark_clipped(ax: Axes, floor: float, y: float, key: str) -> None:
    ax.plot([floor], [y], linestyle="none", marker="<", color="black", markersize=6,
            gid=f"nonpositive:{key}")  # fmt: skip


def _legend_handles() -> list[Line2D]:
    def proxy(label: str, **style) -> Line2D:
        return Line2D([], [], label=label, **style)

    return [
        proxy(
            "published",
            linestyle="none",
            marker="D",
            markerfacecolor="white",
            markeredgecolor="black",
        ),
        proxy("ours, one dot per seed", linestyle="none", marker="o", color="grey"),
        proxy(f"our mean ± {K_SD:g} sd", marker="|", markersize=12, color="grey"),
        proxy("agrees", color=AGREE, linewidth=4),
        proxy("differs", color=DIFFER, linewidth=4),
    ]


def draw_group(ax: Axes, rows: list[dict[str, Any]], unit: str) -> None:
    """Draw `rows` (all of one unit) into `ax`: row 0 at the top, log x past 2 decades."""
    values = _all_values(rows)
    log = spans_decades(values)
    floor = _floor(values) if log else None
    if log:
        ax.set_xscale("log")
    for i, row in enumerate(rows):
        _draw_row(ax, row, float(i), floor)
    labels = [textwrap.fill(row["label"], LABEL_WIDTH) for row in rows]
    ax.set_yticks(np.arange(len(rows)), labels=labels, fontsize="small")
    ax.set_ylim(len(rows) - 0.5, -0.5)  # first row on top, as in the table
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel(f"value ({unit})" if unit else "value")


def _check_axes(ax: Axes | None, n_groups: int) -> None:
    if ax is not None and n_groups > 1:
        raise ValueError(
            f"the rows have {n_groups} units, drawn on one axes each; pass ax=None "
            "to get a new Figure of them"
        )


def published_vs_ours(reproduction: Any, ax: Axes | None = None) -> Figure:
    """Each published figure beside ours over seeds, one line per row of the table.

    Args:
        reproduction: a Reproduction (anything with `to_dict()` giving "rows" as
            `Row.to_dict()` makes them) or that dict (e.g. reproduction.json, read).
        ax: draw into these axes (only when every row has the same unit); None: a new
            Figure with one axes per unit, in the order the units first appear.

    Returns:
        the Figure. Per row with key K, at y = its index within its unit's axes (the
        first row on top; y ticks labelled with the rows' labels): "published:K", the
        published value (x) at y - 0.14; "seeds:K", our finite values at y + 0.14;
        "mean:K", their mean; "spread:K", x = (mean - 2 sd, mean + 2 sd) with sd over seeds
        (ddof=1, 0 for one seed). Green where the row agrees, red where not. Log x when
        the unit's positive values span more than 2 decades; there, values <= 0 (a spread
        reaching below 0 included) are drawn at the smallest positive value of the unit,
        marked by a black "<" (gid "nonpositive:K"). A row with no finite value of ours has text
        "none:K" instead; one with some missing, "missing:K".

    Raises:
        ValueError: no rows; rows of several units with `ax` given; see `rows_of`.
        TypeError: see `rows_of`.
    """
    rows = rows_of(reproduction)
    if not rows:
        raise ValueError("the reproduction has no rows: no published figure to compare")
    groups = _groups(rows)
    _check_axes(ax, len(groups))
    if ax is None:
        height = 1.3 + 0.42 * len(rows) + 0.9 * len(groups)
        fig = Figure(figsize=(8.5, height), layout="constrained")
        axes = fig.subplots(len(groups), 1, squeeze=False,
                            height_ratios=[len(g) + 1 for _, g in groups])[:, 0]  # fmt: skip
        fig.suptitle(f"Published vs ours over {_seed_count(rows)} seeds", fontsize="medium")
    else:
        axes = [ax]
    for a, (unit, group) in zip(axes, groups):
        draw_group(a, group, unit)
    axes[0].legend(handles=_legend_handles(), fontsize="small", loc="lower left",
                   bbox_to_anchor=(0.0, 1.02), ncols=5, frameon=False)  # fmt: skip
    return finished(list(axes))


def _seed_count(rows: Sequence[dict[str, Any]]) -> int:
    """The most seeds any row holds."""
    return max((row["values"].size for row in rows), default=0)
