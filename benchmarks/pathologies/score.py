"""Scoring: a case's found finding keys against its expected ones; per-kind TP/FP/FN."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from benchmarks.pathologies.case import Case


@dataclass(frozen=True)
class Verdict:
    """One case scored.

    Attributes:
        case: the case.
        found: the finding keys the diagnosis and lints gave (see case.label).
        error: what the diagnosis raised, if it raised; then found is empty.
    """

    case: Case
    found: frozenset[str]
    error: str | None = None

    @property
    def tp(self) -> frozenset[str]:
        return self.case.expected & self.found

    @property
    def fp(self) -> frozenset[str]:
        return self.found - self.case.expected - self.case.either

    @property
    def fn(self) -> frozenset[str]:
        return self.case.expected - self.found

    @property
    def ok(self) -> bool:
        return not self.fp and not self.fn and self.error is None

    def __repr__(self) -> str:
        return (
            f"Verdict({self.case.name!r}, ok={self.ok}, fp={sorted(self.fp)}, fn={sorted(self.fn)})"
        )


@dataclass
class Tally:
    """True positives, false positives and false negatives of one finding key."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else float("nan")

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else float("nan")

    def __repr__(self) -> str:
        return f"Tally(tp={self.tp}, fp={self.fp}, fn={self.fn})"


def tally(verdicts: Iterable[Verdict]) -> dict[str, Tally]:
    """Per finding key, over all cases (healthy ones included): its Tally, keys sorted."""
    out: dict[str, Tally] = {}
    for v in verdicts:
        for attr in ("tp", "fp", "fn"):
            for key in getattr(v, attr):
                t = out.setdefault(key, Tally())
                setattr(t, attr, getattr(t, attr) + 1)
    return dict(sorted(out.items()))


def total(tallies: dict[str, Tally]) -> Tally:
    """The micro-averaged Tally over every key."""
    return Tally(
        sum(t.tp for t in tallies.values()),
        sum(t.fp for t in tallies.values()),
        sum(t.fn for t in tallies.values()),
    )
