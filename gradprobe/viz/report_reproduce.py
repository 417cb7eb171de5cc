"""`write_reproduction_report`: one self-contained HTML page of reproduced experiments.

Per reproduction: the published work it reproduces (source and URL, as text), what was
run (seeds, default or full, settings), the summary, the side-by-side table of published
figures and ours with the verdicts, the figure `published_vs_ours`, the published claims
with our evidence, the notes, and then the original's pictures drawn from our runs (the
reproduction's Sections). The Reproduction is read duck-typed, through `to_dict()` and
`.sections` (viz does not import gradprobe.lab), or as that dict (reproduction.json).
The page holds its figures inline and fetches nothing, like `write_report`'s.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gradprobe._version import __version__
from gradprobe.viz import report_embed, report_text
from gradprobe.viz.report import _environment, write_page
from gradprobe.viz.report_reproduce_parts import SectionView, section_view

TEMPLATE = "reproduce.html.j2"
# The keys of Reproduction.to_dict() the page shows; a dict lacking one is not a reproduction.
REQUIRED = ("name", "title", "source", "seeds", "rows", "checks", "notes", "summary")
FIGURE_TITLE = "Published vs ours"
FIGURE_CAPTION = (
    "Each published figure (diamond) beside ours: one dot per seed, our mean (bar) ± 2 sd; "
    "green where they agree, red where not. One axes per unit."
)


@dataclass(frozen=True, repr=False)
class ReproductionView:
    """What the template shows of one reproduction (built by `reproduction_view`)."""

    name: str
    anchor: str
    title: str
    source: str
    url: str
    facts: list[tuple[str, str]]
    settings: list[tuple[str, str]]
    summary: str
    rows: list[dict[str, Any]]
    comparison: report_embed.Embedded
    checks: list[dict[str, Any]]
    notes: list[str]
    sections: list[SectionView]

    @property
    def panels(self) -> list:
        """Every run panel of the sections, each run once (by path)."""
        return list({p.path: p for s in self.sections for p in s.runs}.values())

    @property
    def run_counts(self) -> str:
        """The runs drawn, by status, e.g. "3 runs: 2 done, 1 failed"."""
        counts = Counter(p.status for p in self.panels)
        n = sum(counts.values())
        parts = ", ".join(f"{k} {s}" for s, k in counts.most_common())
        return f"{n} run{'s' * (n != 1)}: {parts}" if n else "no run"

    def __repr__(self) -> str:
        return (
            f"ReproductionView({self.name!r}, {len(self.rows)} rows, {len(self.checks)} "
            f"checks, {len(self.sections)} sections)"
        )


def _is_reproduction(obj: Any) -> bool:
    if isinstance(obj, Mapping):
        return "rows" in obj and "sections" in obj
    return callable(getattr(obj, "to_dict", None)) and hasattr(obj, "sections")


def as_reproductions(reproductions: Any) -> list:
    """One Reproduction (or its dict) or a non-empty list of them, as a list.

    Raises:
        ValueError: an empty list.
        TypeError: not a Reproduction, or a list holding something else.
    """
    if _is_reproduction(reproductions):
        return [reproductions]
    if isinstance(reproductions, Sequence) and not isinstance(reproductions, (str, bytes)):
        items = list(reproductions)
        if not items:
            raise ValueError("reproductions is empty; give a Reproduction or a non-empty list")
        for i, item in enumerate(items):
            if not _is_reproduction(item):
                raise TypeError(
                    f"reproductions[{i}] is not a Reproduction (to_dict() and .sections) "
                    f"nor its dict; got {type(item).__name__}"
                )
        return items
    raise TypeError(
        "reproductions must be a Reproduction (gradprobe.lab.reproduce), its to_dict(), or "
        f"a non-empty list of them; got {type(reproductions).__name__}"
    )


def _data(rep: Any) -> dict[str, Any]:
    data = dict(rep) if isinstance(rep, Mapping) else rep.to_dict()
    lacking = [k for k in REQUIRED if k not in data]
    if lacking:
        raise ValueError(f"the reproduction's dict has no {', '.join(lacking)}")
    return data


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def _num(value: float, digits: int) -> str:
    return f"{value:.{digits}g}" if math.isfinite(value) else "-"


def _cell(column: str, value: float, text: str, title: str = "") -> dict[str, str]:
    return {"column": column, "value": repr(value), "text": text, "title": title}


def row_view(row: Mapping[str, Any]) -> dict[str, Any]:
    """One Row.to_dict() as the table shows it: numeric cells keep repr(value) for
    data-value; the published value is printed as published (up to 6 digits)."""
    unit = str(row.get("unit") or "")
    suffix = f" {unit}" if unit else ""
    values = [_float(v) for v in row.get("values", ())]
    published, mean, sd = _float(row["published"]), _float(row["mean"]), _float(row["spread"])
    per_seed = "per seed: " + ", ".join(_num(v, 4) for v in values)
    return {
        "key": str(row["key"]),
        "label": str(row["label"]),
        "agrees": bool(row["agrees"]),
        "cells": [
            _cell("published", published, _num(published, 6) + suffix),
            _cell("mean", mean, _num(mean, 4) + (suffix if math.isfinite(mean) else ""), per_seed),
            _cell("sd", sd, _num(sd, 2)),
            {
                "column": "n",
                "value": str(row["n"]),
                "text": f"{row['n']}/{len(values)}",
                "title": "",
            },
        ],
        "reason": str(row.get("reason") or ""),
        "why": str(row.get("why") or ""),
    }


def _comparison(data: dict[str, Any], anchor: str) -> report_embed.Embedded:
    module = report_embed.figures_module()
    try:
        shown = report_embed.embed("published_vs_ours", module.published_vs_ours(data), anchor)
    except ValueError as err:
        shown = report_embed.missing("published_vs_ours", str(err))
    return dataclasses.replace(shown, title=FIGURE_TITLE, caption=FIGURE_CAPTION)


def _seeds_text(seeds: Sequence[int]) -> str:
    seeds = list(seeds)
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}..{seeds[-1]} ({len(seeds)} seeds)"
    return ", ".join(map(str, seeds)) + f" ({len(seeds)} seed{'s' * (len(seeds) != 1)})"


def _facts(data: dict[str, Any]) -> list[tuple[str, str]]:
    facts = [
        ("experiment", str(data["name"])),
        ("seeds", _seeds_text(data["seeds"])),
        ("run", "full (--full)" if data.get("full") else "default (see its settings)"),
    ]
    if data.get("elapsed_s"):
        facts.append(("wall time", f"{float(data['elapsed_s']):.1f} s"))
    if data.get("out"):
        facts.append(("runs in", str(data["out"])))
    return facts


def _sections(rep: Any, data: dict[str, Any], anchor: str) -> list[SectionView]:
    sections = data["sections"] if isinstance(rep, Mapping) else rep.sections
    cache: dict = {}
    return [section_view(s, f"{anchor}-s{j + 1}", cache) for j, s in enumerate(sections or ())]


def reproduction_view(rep: Any, index: int) -> ReproductionView:
    """One reproduction as the template shows it; its figures drawn and embedded."""
    data = _data(rep)
    anchor = f"rep-{index + 1}"
    settings = data.get("settings") or {}
    return ReproductionView(
        name=str(data["name"]),
        anchor=anchor,
        title=str(data["title"]),
        source=str(data["source"]),
        url=str(data.get("url") or ""),
        facts=_facts(data),
        settings=[(str(k), report_text.value_text(v)) for k, v in settings.items()],
        summary=str(data["summary"]),
        rows=[row_view(r) for r in data["rows"]],
        comparison=_comparison(data, f"{anchor}-cmp-"),
        checks=[
            {**c, "claim": str(c["claim"]), "evidence": str(c["evidence"])} for c in data["checks"]
        ],
        notes=[str(n) for n in data["notes"]],
        sections=_sections(rep, data, anchor),
    )


def render_reproduction_report(reproductions: Any, *, title: str | None = None) -> str:
    """The page as an HTML string; see `write_reproduction_report`."""
    views = [reproduction_view(r, i) for i, r in enumerate(as_reproductions(reproductions))]
    default = "gradprobe reproduce: " + "; ".join(v.title for v in views)
    return (
        _environment()
        .get_template(TEMPLATE)
        .render(
            title=title or default,
            reproductions=views,
            version=__version__,
            created=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        )
    )


def write_reproduction_report(
    reproductions: Any, out: str | Path, *, title: str | None = None
) -> Path:
    """Write one self-contained HTML page of one reproduction or several.

    Args:
        reproductions: a Reproduction of gradprobe.lab.reproduce (read through its
            `to_dict()` and `.sections`), its dict (reproduction.json, read: sections
            without their models), or a non-empty list of them (e.g. the two of
            `reproduce("nielsen")`).
        out: the HTML file; parent directories are created. Written atomically.
        title: the page title; default "gradprobe reproduce: <titles>".

    Returns:
        the path written.

    Raises:
        TypeError: not a Reproduction or a list of them; a section's table row that is
            not a mapping.
        ValueError: an empty list; a dict lacking name, title, source, seeds, rows,
            checks, notes or summary.
    """
    return write_page(render_reproduction_report(reproductions, title=title), out)
