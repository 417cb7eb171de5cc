"""`FixResult`: the ranked trials, the baseline they are compared with, the remedies that
could only be suggested, as text and as a JSON-safe dict."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from gradprobe.diagnose.finding import json_safe
from gradprobe.lab.fixes.candidates import Suggestion
from gradprobe.lab.fixes.ranking import Ranked

_COLUMNS = ("rank", "remedy", "changes", "resolved", "left", "new", "spread", "loss")
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
        cand.name + failed,
        cand.plan.describe(),
        ", ".join(cand.resolved) or "-",
        ", ".join(cand.remaining) or "-",
        ", ".join(cand.new) or "-",
        _num(cand.gain_spread),
        f"{_num(cand.loss_start)} -> {_num(cand.loss_end)}"
        + (_WORSE if cand.rank and cand.regressed else ""),
    )


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

    def table(self) -> str:
        """The ranked table as plain text, with the suggestions below it."""
        rows = [_COLUMNS, *self.rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        head = (
            f"targets: {', '.join(self.targets) or 'none'}; {self.settings.get('steps')} steps x "
            f"seeds {list(self.settings.get('seeds', []))}; loss = {self.settings.get('reference')}"
        )
        out = [head, *lines]
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
