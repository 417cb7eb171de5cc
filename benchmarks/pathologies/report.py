"""The benchmark's printed report and its JSON form."""

from __future__ import annotations

import math
from typing import Any

from benchmarks.pathologies.case import Case
from benchmarks.pathologies.score import Tally, Verdict, tally, total

# (case, verdict or None when no diagnosis exists, evidence, seconds)
Result = tuple[Case, "Verdict | None", dict, float]


def _keys(verdicts: list[Verdict]) -> dict[str, Tally]:
    """Per-key tallies, with every expected key listed even when nothing was found."""
    out = tally(verdicts)
    for v in verdicts:
        for key in v.case.expected:
            out.setdefault(key, Tally())
    return dict(sorted(out.items()))


def _fmt(x: float) -> str:
    return "  -  " if math.isnan(x) else f"{x:5.2f}"


def _names(keys) -> str:
    return ", ".join(sorted(keys)) or "-"


def _print_cases(verdicts: list[Verdict]) -> None:
    print("\nper case (expected | found):")
    for v in verdicts:
        mark = "ok  " if v.ok else "MISS"
        extra = f"  FP: {_names(v.fp)}" if v.fp else ""
        extra += f"  FN: {_names(v.fn)}" if v.fn else ""
        extra += f"  either: {_names(v.case.either)}" if v.case.either else ""
        extra += f"  ERROR {v.error}" if v.error else ""
        print(
            f"  {mark} {v.case.name:22s} {_names(v.case.expected):45s} | {_names(v.found)}{extra}"
        )


def _print_kinds(tallies: dict[str, Tally]) -> None:
    print(f"\n{'kind':36s} {'TP':>3s} {'FP':>3s} {'FN':>3s}  prec  recall")
    for key, t in tallies.items():
        print(f"{key:36s} {t.tp:3d} {t.fp:3d} {t.fn:3d}  {_fmt(t.precision)} {_fmt(t.recall)}")
    t = total(tallies)
    print(
        f"{'all (micro)':36s} {t.tp:3d} {t.fp:3d} {t.fn:3d}  {_fmt(t.precision)} {_fmt(t.recall)}"
    )


def _print_targets(verdicts: list[Verdict], tallies: dict[str, Tally]) -> None:
    healthy = [v for v in verdicts if v.case.healthy]
    print(f"\nhealthy cases ({len(healthy)}):")
    for v in healthy:
        print(f"  {v.case.name:22s} {_names(v.found) if v.found else 'no finding'}")
    missed = [k for k, t in tallies.items() if t.fp or t.fn]
    sick_healthy = [v.case.name for v in healthy if v.found]
    if missed or sick_healthy or any(v.error for v in verdicts):
        print("\nTARGET MISSED: precision and recall 1.0 for every kind, no healthy finding.")
        print(f"  kinds below 1.0: {_names(missed)}")
        print(f"  healthy cases with findings: {_names(sick_healthy)}")
    else:
        print("\ntarget met: precision and recall 1.0 for every kind, no healthy finding")


def print_report(results: list[Result], elapsed: float, diagnosed: bool, linted: bool) -> None:
    """Print the per-case verdicts, the per-kind table, the healthy cases and the time."""
    verdicts = [v for _c, v, _e, _s in results if v is not None]
    if not diagnosed:
        print("\ngradprobe.diagnose.diagnosis is not available yet: raw evidence only.")
    elif not linted:
        print("\ngradprobe.diagnose.lints is not available yet: lint kinds will be missed.")
    if verdicts:
        tallies = _keys(verdicts)
        _print_cases(verdicts)
        _print_kinds(tallies)
        _print_targets(verdicts, tallies)
    print(f"\n{len(results)} cases in {elapsed:.1f} s")


def _safe(value: Any) -> Any:
    """`value` with NaN and infinities as None: strict JSON has no literal for them."""
    if isinstance(value, dict):
        return {k: _safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def to_json(results: list[Result], elapsed: float, diagnosed: bool) -> dict[str, Any]:
    """Everything print_report shows, as a JSON-able dict."""
    cases = []
    for case, v, ev, seconds in results:
        entry = {"name": case.name, "expected": sorted(case.expected), "why": case.why}
        entry |= {"either": sorted(case.either), "seconds": round(seconds, 3)}
        entry["evidence"] = _safe(ev)
        if v is not None:
            entry |= {"found": sorted(v.found), "fp": sorted(v.fp), "fn": sorted(v.fn)}
            entry |= {"ok": v.ok, "error": v.error}
        cases.append(entry)
    tallies = _keys([v for _c, v, _e, _s in results if v is not None])
    kinds = {k: {"tp": t.tp, "fp": t.fp, "fn": t.fn} for k, t in tallies.items()}
    return {"diagnosed": diagnosed, "seconds": round(elapsed, 3), "cases": cases, "kinds": kinds}
