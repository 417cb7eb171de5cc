"""A reproduction's result: our numbers beside the published ones, row by row.

`Row` (gradprobe.lab.reproduce.row, re-exported here) sets one published figure beside our
values over seeds and says whether they agree; `Check` says whether a published qualitative
claim holds in our runs, with the evidence; `Section` names the pictures of the original to
draw from our runs; `Reproduction` holds them all, prints the side-by-side table and writes
the same table as JSON for machines.
"""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradprobe.lab.reproduce.row import Row

__all__ = ["Check", "Reproduction", "Row", "Section"]

LABEL_WIDTH = 46  # the table's first column; the whole table stays within 100 columns


@dataclass(frozen=True)
class Check:
    """A published qualitative claim and whether it holds in our runs.

    Attributes:
        key: the claim's key in published.json.
        claim: the claim's text, as published.
        holds: whether our runs show it.
        evidence: our numbers behind the verdict, in words.
    """

    key: str
    claim: str
    holds: bool
    evidence: str

    def to_dict(self) -> dict[str, Any]:
        """The check for JSON."""
        return {
            "key": self.key,
            "claim": self.claim,
            "holds": self.holds,
            "evidence": self.evidence,
        }

    def __repr__(self) -> str:
        return f"Check({self.key!r}, holds={self.holds}, evidence={self.evidence[:50]!r})"


@dataclass(frozen=True)
class Section:
    """One of the original's pictures, drawn from our runs in the report.

    Attributes:
        title, caption: what the picture shows and how to read it.
        runs: run directories whose Records the figures are drawn from.
        figures: names of `gradprobe.viz.figures` to draw for each run.
        model, data: a trained 2-D classifier and (x, y) arrays (x of shape (n, 2)) whose
            decision surface is drawn.
        table: rows of a small table (one mapping of column -> value per row), e.g. the
            chain demo's dz, dw, db per layer.
    """

    title: str
    caption: str = ""
    runs: tuple[Path, ...] = ()
    figures: tuple[str, ...] = ()
    model: Any = None
    data: tuple[Any, Any] | None = None
    table: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The section for JSON (the model itself is not saved)."""
        return {
            "title": self.title,
            "caption": self.caption,
            "runs": [str(r) for r in self.runs],
            "figures": list(self.figures),
            "decision_surface": self.model is not None,
            "table": [dict(r) for r in self.table],
        }

    def __repr__(self) -> str:
        return f"Section({self.title!r}, {len(self.runs)} runs, figures={list(self.figures)})"


@dataclass
class Reproduction:
    """One experiment reproduced: the side-by-side rows, the claims, notes and pictures.

    Attributes:
        name, title, source, url: the experiment and the published work it reproduces.
        seeds: the seeds we ran.
        full: whether the original was run in full (else the default, smaller version).
        settings: what was run (epochs, examples, sizes...), JSON-able.
        rows, checks: published figures beside ours; published claims tested.
        notes: plain words on where and why ours differs from the original's setup.
        sections: the pictures for the report.
        out: the directory holding the runs and reproduction.json (None: kept in memory).
        elapsed_s: wall time of the run.
    """

    name: str
    title: str
    source: str
    url: str | None
    seeds: tuple[int, ...]
    full: bool
    settings: dict[str, Any] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    out: Path | None = None
    elapsed_s: float = 0.0

    @property
    def runs(self) -> list[Path]:
        """Every run directory the sections draw from, in order, once each."""
        seen: dict[Path, None] = {}
        for section in self.sections:
            seen.update(dict.fromkeys(section.runs))
        return list(seen)

    def summary(self) -> str:
        """One paragraph: how many figures agree, how many claims hold, which do not."""
        agree = [r for r in self.rows if r.agrees]
        hold = [c for c in self.checks if c.holds]
        parts = []
        if self.rows:
            parts.append(
                f"{len(agree)} of {len(self.rows)} published figures agree with ours "
                f"within the seed spread ({len(self.seeds)} seeds)"
            )
        if self.checks:
            parts.append(f"{len(hold)} of {len(self.checks)} published claims hold")
        text = "; ".join(parts) + "." if parts else "Nothing to compare."
        differ = [r.label for r in self.rows if not r.agrees]
        fail = [c.key for c in self.checks if not c.holds]
        if differ:
            text += " Differs: " + "; ".join(differ) + "."
        if fail:
            text += " Does not hold: " + ", ".join(fail) + "."
        return text

    def table(self) -> str:
        """The side-by-side table, the claims and the notes as plain text (<= 100 columns)."""
        lines = [self.title, *_wrap(f"source: {self.source}", "", indent_rest="        ")]
        if self.url:
            lines.append(f"        {self.url}")
        lines.append(f"seeds: {_seed_text(self.seeds)}   {'full' if self.full else 'default'} run")
        if self.rows:
            lines += ["", _row_header(), "-" * len(_row_header())]
            lines += [_row_line(r) for r in self.rows]
        if self.checks:
            lines += ["", "published claims:"]
            for c in self.checks:
                lines += _wrap(f"[{'holds' if c.holds else 'FAILS'}] {c.claim}", "  ")
                lines += _wrap(f"ours: {c.evidence}", "          ")
        lines += ["", *_wrap(self.summary(), "")]
        why = [f"{r.label}: {r.why}" for r in self.rows if r.why and not r.agrees]
        for note in [*self.notes, *why]:
            lines += _wrap(f"- {note}", "", indent_rest="  ")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Everything the table shows, for machines (`gradprobe reproduce --json`)."""
        return {
            "name": self.name,
            "title": self.title,
            "source": self.source,
            "url": self.url,
            "seeds": list(self.seeds),
            "full": self.full,
            "settings": self.settings,
            "rows": [r.to_dict() for r in self.rows],
            "checks": [c.to_dict() for c in self.checks],
            "notes": list(self.notes),
            "summary": self.summary(),
            "sections": [s.to_dict() for s in self.sections],
            "out": None if self.out is None else str(self.out),
            "elapsed_s": self.elapsed_s,
        }

    def to_json(self, path: str | Path) -> Path:
        """Write `to_dict()` as JSON to `path` (parents created); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")
        return path

    def __repr__(self) -> str:
        return (
            f"Reproduction({self.name!r}, seeds={_seed_text(self.seeds)}, full={self.full}, "
            f"{sum(r.agrees for r in self.rows)}/{len(self.rows)} rows agree, "
            f"{sum(c.holds for c in self.checks)}/{len(self.checks)} claims hold)"
        )


def _seed_text(seeds: Sequence[int]) -> str:
    if len(seeds) > 2 and list(seeds) == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}..{seeds[-1]} ({len(seeds)})"
    return ", ".join(map(str, seeds)) + f" ({len(seeds)})"


def _num(x: float) -> str:
    if not math.isfinite(x):
        return "-"
    return f"{x:.3g}" if abs(x) < 1e4 else f"{x:.2e}"


def _row_header() -> str:
    return (
        f"{'figure':<{LABEL_WIDTH}} {'published':>10} {'ours mean':>10} {'sd':>9} {'n':>4} "
        f"{'agrees':>7}"
    )


def _row_line(r: Row) -> str:
    label = r.label if len(r.label) <= LABEL_WIDTH else r.label[: LABEL_WIDTH - 3] + "..."
    verdict = "yes" if r.agrees else "NO"
    return (
        f"{label:<{LABEL_WIDTH}} {_num(r.published):>10} {_num(r.mean):>10} "
        f"{_num(r.spread):>9} {r.n:>4} {verdict:>7}"
    )


def _wrap(text: str, indent: str, indent_rest: str | None = None) -> list[str]:
    rest = indent if indent_rest is None else indent_rest
    return textwrap.wrap(text, width=100, initial_indent=indent, subsequent_indent=rest) or [""]
