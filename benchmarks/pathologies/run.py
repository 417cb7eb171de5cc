"""Run the benchmark: build each case, diagnose its record, lint its model and loss,
and score the finding kinds against the expected ones.

    python benchmarks/pathologies/run.py [--only NAME ...] [--json]

Exits 0 whatever the score (it is a benchmark); says clearly when a target is missed:
precision and recall 1.0 for every kind, and no finding on a healthy case.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root, for imports

from benchmarks.pathologies.case import Case, label  # noqa: E402
from benchmarks.pathologies.cases import select  # noqa: E402
from benchmarks.pathologies.evidence import evidence, line  # noqa: E402
from benchmarks.pathologies.report import print_report, to_json  # noqa: E402
from benchmarks.pathologies.score import Verdict  # noqa: E402


def _diagnosers():
    """(diagnose, lint) from gradprobe.diagnose, each None while it does not exist."""
    try:
        from gradprobe.diagnose.diagnosis import diagnose
    except ImportError:
        diagnose = None
    try:
        from gradprobe.diagnose.lints import lint
    except ImportError:
        lint = None
    return diagnose, lint


def run_case(case: Case, diagnose, lint) -> tuple[Verdict | None, dict, float]:
    """Build, measure and (when a diagnosis exists) score one case."""
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NaN cases warn by design
        outcome = case.build()
    ev = evidence(outcome.record)
    if diagnose is None:
        return None, ev, time.perf_counter() - start
    try:
        findings = list(diagnose(outcome.record))
        if lint is not None and outcome.lint_args is not None:
            findings += lint(*outcome.lint_args)
        found = frozenset(label(f.kind, f.axis) for f in findings)
        verdict = Verdict(case, found)
    except Exception as exc:  # a benchmark reports a crash as a result, it goes on
        traceback.print_exc()
        verdict = Verdict(case, frozenset(), f"{type(exc).__name__}: {exc}")
    return verdict, ev, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these cases")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = parser.parse_args(argv)
    diagnose, lint = _diagnosers()
    start = time.perf_counter()
    results = []
    for case in select(args.only):
        verdict, ev, seconds = run_case(case, diagnose, lint)
        results.append((case, verdict, ev, seconds))
        if not args.json:
            print(f"{case.name:22s} {seconds:5.1f}s  {line(ev)}", flush=True)
    elapsed = time.perf_counter() - start
    if args.json:
        print(json.dumps(to_json(results, elapsed, diagnose is not None), indent=1))
    else:
        print_report(results, elapsed, diagnose is not None, lint is not None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
