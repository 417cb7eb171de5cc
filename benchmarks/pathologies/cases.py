"""The case registry: every known-sick and known-healthy case, by name."""

from __future__ import annotations

from collections.abc import Iterable

from benchmarks.pathologies import (
    cases_depth,
    cases_healthy,
    cases_lint,
    cases_time,
    cases_training,
)
from benchmarks.pathologies.case import Case

CASES: list[Case] = [
    *cases_depth.CASES,
    *cases_training.CASES,
    *cases_lint.CASES,
    *cases_time.CASES,
    *cases_healthy.CASES,
]
BY_NAME: dict[str, Case] = {case.name: case for case in CASES}
assert len(BY_NAME) == len(CASES), "case names must be unique"


def select(names: Iterable[str] | None = None) -> list[Case]:
    """The cases with the given names, in registry order; all of them for None or empty.

    Raises:
        KeyError: a name is not a case, with the list of names.
    """
    wanted = list(names or [])
    unknown = [n for n in wanted if n not in BY_NAME]
    if unknown:
        raise KeyError(f"no case named {unknown}; cases: {', '.join(BY_NAME)}")
    return [c for c in CASES if not wanted or c.name in wanted]
