"""The fix benchmark: on every bad case of the pathology benchmark, diagnose the case's own
run, hand its findings to `try_fixes` and check that the top-ranked remedy resolves them
all (on every seed) with a lower loss after the budget than the unchanged model's.

    python benchmarks/fixes.py [--only NAME ...] [--steps 100] [--seeds 2] [--jobs 2] [--json]

The loss compared is the class NLL (nats) for the classification cases, whatever loss a
trial trains with, and the MSE for the one regression case; a loss that became non-finite
counts as nan, worse than any number. Exits 0 whatever the outcome (it is a benchmark) and
prints `TARGET MISSED` with the cases that fall short.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for imports

from benchmarks.fixes_problems import PROBLEMS  # noqa: E402
from benchmarks.pathologies.cases import CASES  # noqa: E402
from gradprobe.diagnose.diagnosis import diagnose  # noqa: E402
from gradprobe.diagnose.lints import lint  # noqa: E402
from gradprobe.lab.fixes.api import try_fixes  # noqa: E402


def case_findings(case) -> list:
    """The findings of the case's own run: the diagnosis and the lints."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NaN cases warn by design
        outcome = case.build()
    findings = list(diagnose(outcome.record))
    if outcome.lint_args is not None:
        findings += lint(*outcome.lint_args)
    return findings


def run_case(case, steps: int, seeds: tuple[int, ...], jobs: int) -> dict:
    """One row: the case's findings, the top remedy, findings and losses before / after."""
    start = time.perf_counter()
    factory, data, loss_fn, optimizer = PROBLEMS[case.name]
    result = try_fixes(factory, data, loss_fn, case_findings(case), steps=steps, seeds=seeds,
                       optimizer=optimizer, jobs=jobs)  # fmt: skip
    base, best = result.baseline, result.best
    labels = lambda cand: sorted(set().union(*(r.labels for r in cand.runs)))  # noqa: E731
    fixed = best is not None and not best.remaining and _lower(best.loss_end, base.loss_end)
    return {
        "case": case.name,
        "targets": list(result.targets),
        "top": None if best is None else best.name,
        "changes": None if best is None else best.plan.describe(),
        "before": labels(base),
        "after": [] if best is None else labels(best),
        "loss_before": base.loss_end,
        "loss_after": math.nan if best is None else best.loss_end,
        "fixed": bool(fixed),
        "left": [] if best is None else list(best.remaining),
        "candidates": len(result.ranked),
        "suggested": [s.remedy for s in result.suggestions],
        "seconds": round(time.perf_counter() - start, 1),
        "result": result,
    }


# Losses within 0.1% are the same: a fix that changes no arithmetic (log_softmax is
# idempotent; log(softmax(z)) equals log_softmax(z) while finite) differs by rounding only.
SAME = 1e-3


def _lower(after: float, before: float) -> bool:
    """after below before by more than SAME (relative); a nan before (a run that broke)
    loses to any finite after."""
    if not math.isfinite(after):
        return False
    return not math.isfinite(before) or after < before * (1 - SAME)


def verdict(row: dict) -> str:
    """yes, or why not: findings left, or a loss that is not lower."""
    if row["fixed"]:
        return "yes"
    if row["top"] is None or row["left"]:
        return "**no**: " + (", ".join(row["left"]) + " left" if row["left"] else "no candidate")
    same = abs(row["loss_after"] - row["loss_before"]) <= SAME * abs(row["loss_before"])
    return "**no**: same loss" if same else "**no**: loss not lower"


def _num(x: float) -> str:
    return f"{x:.3g}" if math.isfinite(x) else "nan"


def markdown(rows: list[dict]) -> str:
    """The results table in Markdown."""
    head = ("| case | findings | top remedy (changes) | findings before | findings after "
            "| loss before | loss after | resolved? |")  # fmt: skip
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        cells = [
            r["case"], ", ".join(r["targets"]), f"{r['top']} ({r['changes']})",
            ", ".join(r["before"]) or "-", ", ".join(r["after"]) or "-",
            _num(r["loss_before"]), _num(r["loss_after"]), verdict(r),
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these cases")
    parser.add_argument("--steps", type=int, default=100, help="steps per trial")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per candidate: 0..K-1")
    parser.add_argument("--jobs", type=int, default=2, help="trial processes")
    parser.add_argument("--json", action="store_true", help="print JSON instead")
    parser.add_argument("--tables", action="store_true", help="print each ranked table")
    args = parser.parse_args(argv)
    cases = [c for c in CASES if not c.healthy and (not args.only or c.name in args.only)]
    start, rows = time.perf_counter(), []
    for case in cases:
        row = run_case(case, args.steps, tuple(range(args.seeds)), args.jobs)
        rows.append(row)
        if not args.json:
            verdict = "fixed" if row["fixed"] else "NOT FIXED"
            print(f"{case.name:22s} {row['seconds']:6.1f}s  {verdict:9s} top: {row['top']}",
                  flush=True)  # fmt: skip
            if args.tables:
                print(row["result"].table(), flush=True)
    elapsed = time.perf_counter() - start
    if args.json:
        out = [{k: v for k, v in r.items() if k != "result"} for r in rows]
        print(json.dumps({"rows": out, "seconds": elapsed}, indent=1, default=str))
        return 0
    print()
    print(markdown(rows))
    missed = [r["case"] for r in rows if not r["fixed"]]
    print(f"\n{len(rows) - len(missed)}/{len(rows)} cases fixed, {args.steps} steps x "
          f"{args.seeds} seeds per trial, {elapsed:.0f} s")  # fmt: skip
    if missed:
        print(f"TARGET MISSED: {', '.join(missed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
