"""The pictures of a reproduction's Sections: each run's figures, a decision surface, a table.

A Section (gradprobe.lab.reproduce.Section, read duck-typed: viz does not import the lab)
names run directories and the figures of `gradprobe.viz.figures` to draw from each; a
run that cannot be read, or a figure it has no data for, is shown with the reason
instead of stopping the report. A run that failed or was cut short carries the status
banner of the main report (report_text.banner): its status and first non-finite step.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradprobe.viz import report_embed, report_text
from gradprobe.viz.report_run import as_source

# Names in gradprobe.viz.figures that are not drawn from one run's Record.
NOT_PER_RUN = frozenset({"available", "decision_surface", "published_vs_ours"})
# What reading a run directory may raise: missing or not a run (OSError), a bad run.json
# (ValueError), a damaged database (sqlite3.Error), neither a path nor a Record (TypeError).
UNREADABLE = (OSError, ValueError, TypeError, sqlite3.Error)
# What a model may raise on the decision surface's grid beyond the figure's ValueError: a
# model whose input is not 2-D fails in its first layer (RuntimeError) or its call.
MODEL_ERRORS = (ValueError, RuntimeError, TypeError)
SURFACE_NOT_SAVED = (
    "reproduction.json keeps no model; the report written by gradprobe reproduce, "
    "from the Reproduction itself, draws it"
)


def field_of(obj: Any, name: str, default: Any = None) -> Any:
    """`obj.name`, or `obj[name]` for a mapping (a Section, or its to_dict())."""
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


@dataclass(frozen=True, repr=False)
class RunPanel:
    """One run of a section: its name, status, banner and figures (or why it is missing)."""

    name: str
    path: str
    status: str
    status_line: str
    banner: dict | None
    figures: list = field(default_factory=list)
    error: str = ""

    def __repr__(self) -> str:
        what = self.error or f"{self.status}, {len(self.figures)} figures"
        return f"RunPanel({self.name!r}, {what})"


@dataclass(frozen=True, repr=False)
class SectionView:
    """What the template shows of one Section."""

    title: str
    caption: str
    anchor: str
    runs: list[RunPanel]
    surface: report_embed.Embedded | None
    columns: list[str]
    table: list[list[dict[str, str]]]

    def __repr__(self) -> str:
        return (
            f"SectionView({self.title!r}, {len(self.runs)} runs, "
            f"surface={self.surface is not None}, {len(self.table)} table rows)"
        )


def per_run_figures() -> list[str]:
    """The figure functions of gradprobe.viz.figures that draw one run's Record."""
    return [n for n in report_embed.figures_module().__all__ if n not in NOT_PER_RUN]


def draw_run(rec: Any, names: list[str], prefix: str) -> list[report_embed.Embedded]:
    """Each figure of `names` from `rec`, in the order given; an unknown name or a figure
    without its data is kept as missing, with the reason."""
    known = per_run_figures()
    out = []
    for i, name in enumerate(names):
        if name not in known:
            reason = f"{name!r} is not a figure of one run; those are: {', '.join(known)}"
            out.append(report_embed.missing(name, reason))
        else:
            out += report_embed.draw(rec, [name], f"{prefix}f{i}-")
    return out


def run_panel(run: Any, names: list[str], prefix: str, cache: dict) -> RunPanel:
    """A run directory (or Record) of a section, read once per page via `cache`."""
    key = str(run) if isinstance(run, (str, Path)) else f"in memory #{id(run)}"
    try:
        if key not in cache:
            cache[key] = as_source(run, len(cache))
        source = cache[key]
    except UNREADABLE as err:
        return RunPanel(Path(key).name, key, "unreadable", "", None, error=str(err))
    rec = source.record
    return RunPanel(
        name=source.name,
        path=key,
        status=rec.status or "in memory",
        status_line=report_text.status_line(rec),
        banner=report_text.banner(rec),
        figures=draw_run(rec, names, prefix),
    )


def surface(section: Any, prefix: str) -> report_embed.Embedded | None:
    """The decision surface of the section's model over its data; None without a model."""
    model, data = field_of(section, "model"), field_of(section, "data")
    if model is None and field_of(section, "decision_surface"):
        # Section.to_dict() (reproduction.json) says a surface was drawn but keeps no model
        return report_embed.missing("decision_surface", SURFACE_NOT_SAVED)
    if model is None:
        return None
    if data is None or len(data) != 2:
        return report_embed.missing(
            "decision_surface", f"model given without data=(x, y): {data!r}"
        )
    try:
        return report_embed.draw(None, ["decision_surface"], prefix, model, data)[0]
    except MODEL_ERRORS as err:
        return report_embed.missing("decision_surface", f"{type(err).__name__}: {err}")


def _cell(column: str, value: Any) -> dict[str, str]:
    raw = repr(float(value)) if isinstance(value, float) else str(value)
    return {"column": column, "value": raw, "text": report_text.value_text(value)}


def table_cells(rows: Any) -> tuple[list[str], list[list[dict[str, str]]]]:
    """A section's table: (columns in the order first seen, one list of cells per row).

    A cell holds "column", "value" (repr of a float, else str; for data-value) and
    "text" (as shown, report_text.value_text); a row without a column shows "-".

    Raises:
        TypeError: a row is not a mapping.
    """
    rows = list(rows or ())
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise TypeError(f"table row {i} must be a mapping of column -> value; got {row!r}")
    columns = list(dict.fromkeys(str(k) for row in rows for k in row))
    cells = [
        [_cell(c, row[c]) if c in row else {"column": c, "value": "", "text": "-"} for c in columns]
        for row in [{str(k): v for k, v in r.items()} for r in rows]
    ]
    return columns, cells


def section_view(section: Any, anchor: str, cache: dict) -> SectionView:
    """One Section (or its to_dict()) as the template shows it."""
    names = [str(n) for n in field_of(section, "figures", ()) or ()]
    runs = list(field_of(section, "runs", ()) or ())
    columns, table = table_cells(field_of(section, "table", ()))
    return SectionView(
        title=str(field_of(section, "title", "") or ""),
        caption=str(field_of(section, "caption", "") or ""),
        anchor=anchor,
        runs=[run_panel(run, names, f"{anchor}r{k}", cache) for k, run in enumerate(runs)],
        surface=surface(section, f"{anchor}ds-"),
        columns=columns,
        table=table,
    )
