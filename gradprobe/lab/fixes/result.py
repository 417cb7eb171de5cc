"""`FixResult`: the ranked trials, the baseline they are compared with, the remedies that
could only be suggested, as text and as a JSON-safe dict."""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field
from typing import Any

from gradprobe.diagnose.finding import json_safe
from gradprobe.lab.fixes import layout
from gradprobe.lab.fixes.candidates import Suggestion
from gradprobe.lab.fixes.plan import BASELINE
from gradprobe.lab.fixes.ranking import Ranked

_COLUMNS = ("#", "remedy", "changes", "resolved", "left", "new", "spread", "loss")
_FIXED = {0, 5}  # rank and spread keep their width in `fitted` (columns without changes)
# The table's default width: fits a 100-column terminal (a common editor ruler, and this
# project's line length, pyproject.toml).
WIDTH = 100
_WORSE = " (worse)"  # marks a loss that did not fall below the baseline's


def _num(x: float) -> str:
    if not math.isfinite(x):
        return "nan" if math.isnan(x) else str(x)
    return f"{x:.3g}"


def row(cand: Ranked) -> tuple[str, ...]:
    """One table row of text: rank ("-" for the baseline), name, changes, findings
    resolved, left and new, gain spread, loss start -> end."""
    failed = f" [failed: {cand.failed[0].error}]" if cand.failed else ""
    return (
        str(cand.rank) if cand.rank else "-",
        cand.name,
        cand.plan.describe() + failed,
        ", ".join(cand.resolved) or "-",
        ", ".join(cand.remaining) or "-",
        ", ".join(cand.new) or "-",
        _num(cand.gain_spread),
        f"{_num(cand.loss_start)} -> {_num(cand.loss_end)}"
        + (_WORSE if cand.rank and cand.regressed else ""),
    )


def fitted(rows: list[tuple[str, ...]], width: int) -> list[str]:
    """The rows (header first, `row`'s layout) as lines of at most `width` characters
    where the narrowest columns allow: each candidate's changes go on a line of their
    own below it, indented under the remedy (none for an unchanged, unfailed baseline)."""
    changes = [r[2] for r in rows]
    cells = [r[:2] + r[3:] for r in rows]
    widths = layout.column_widths(cells, _FIXED, width)
    indent = " " * (widths[0] + len(layout.GAP))
    lines = layout.render(cells[:1], widths)
    for cells_i, change in zip(cells[1:], changes[1:]):
        lines += layout.render([cells_i], widths)
        if change != BASELINE.describe():
            text = textwrap.wrap(f"changes: {change}", max(width - len(indent), 20))
            lines += [indent + t for t in text]
    return lines


@dataclass
class FixResult:
    """What `try_fixes` found.

    Attributes:
        targets: the finding keys the trials set out to resolve.
        baseline: the unchanged model's trials.
        ranked: the candidates, best first.
        suggestions: remedies that fit but need a factory option it does not take.
        settings: steps, seeds, budget_s, reference loss, jobs.
        notes: remarks (a remedy left out, a report skipped).
    """

    targets: tuple[str, ...]
    baseline: Ranked
    ranked: list[Ranked]
    suggestions: list[Suggestion] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def best(self) -> Ranked | None:
        """The top-ranked candidate, None when no remedy fitted."""
        return self.ranked[0] if self.ranked else None

    def rows(self) -> list[tuple[str, ...]]:
        """The table's rows: the baseline first, then the ranking."""
        return [row(self.baseline)] + [row(c) for c in self.ranked]

    def table(self, width: int = WIDTH) -> str:
        """The ranked table as plain text, lines of at most `width` characters (wrapped
        cells, each candidate's changes on a line below it), the suggestions below."""
        if isinstance(width, bool) or not isinstance(width, int) or width < 40:
            raise ValueError(f"width={width!r} is not valid: must be an int >= 40")
        head = (
            f"targets: {', '.join(self.targets) or 'none'}; {self.settings.get('steps')} steps x "
            f"seeds {list(self.settings.get('seeds', []))}; loss = {self.settings.get('reference')}"
        )
        out = [*textwrap.wrap(head, width), *fitted([_COLUMNS, *self.rows()], width)]
        if self.suggestions:
            out.append("suggested (not tried: the factory takes no such option):")
            out += [f"  {s}" for s in self.suggestions]
        out += [f"note: {n}" for n in self.notes]
        return "\n".join(out)

    def __repr__(self) -> str:
        return self.table()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict of everything above, every trial included."""

        def cand(c: Ranked) -> dict[str, Any]:
            return {
                "rank": c.rank,
                "name": c.name,
                "remedies": list(c.remedies),
                "changes": c.plan.describe(),
                "resolved": list(c.resolved),
                "remaining": list(c.remaining),
                "new": list(c.new),
                "regressed": c.regressed,
                "gain_spread": c.gain_spread,
                "loss_start": c.loss_start,
                "loss_end": c.loss_end,
                "trials": [vars(r) for r in c.runs],
            }

        return json_safe(
            {
                "targets": list(self.targets),
                "baseline": cand(self.baseline),
                "ranked": [cand(c) for c in self.ranked],
                "suggestions": [vars(s) for s in self.suggestions],
                "settings": self.settings,
                "notes": self.notes,
            }
        )
