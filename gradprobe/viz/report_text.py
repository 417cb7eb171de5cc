"""Numbers and run facts as the report's text: status banners, findings, config rows."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from gradprobe.diagnose.finding import Finding, span_text
from gradprobe.record.format import fmt
from gradprobe.record.record import Record

# Evidence lists longer than this are cut, with a count of the rest: a per-layer list of
# a 500-layer net would drown the finding.
MAX_LIST = 8
# run.json keys shown elsewhere (config, evaluation) or of no use to a reader (pid_start).
_RUN_SKIP = ("config", "evaluation", "pid_start", "format")


# A number as `gradprobe show` prints it: at most 3 significant digits, "-" for NaN.
number = fmt


def value_text(value: Any) -> str:
    """Any JSON-able value in a few characters: numbers rounded, long lists cut."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return str(value) if isinstance(value, int) else number(value)
    if isinstance(value, (list, tuple)):
        shown = ", ".join(value_text(v) for v in value[:MAX_LIST])
        more = f", … ({len(value)} values)" if len(value) > MAX_LIST else ""
        return f"[{shown}{more}]"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {value_text(v)}" for k, v in value.items())
    return str(value)


def finding_view(f: Finding) -> dict[str, Any]:
    """What the template shows of one finding."""
    head = f.kind.replace("_", " ") + (" along time" if f.axis == "time" else "")
    where = [f"at {f.place}"] if f.place else []
    where += [span_text(f.steps)] if f.steps else []
    return {
        "kind": f.kind,
        "severity": f.severity,
        "headline": head,
        "where": ", ".join(where),
        "summary": f.summary,
        "cause": f.cause,
        "fix": f.fix,
        "evidence": [(key, value_text(v)) for key, v in f.evidence.items()],
    }


def severity_counts(findings: list[Finding]) -> list[tuple[str, int]]:
    """(severity, count) for each severity present, most serious first."""
    order = ("error", "warning", "info")
    return [(s, n) for s in order if (n := sum(f.severity == s for f in findings))]


def _nonfinite_line(rec: Record) -> str | None:
    bad = rec.first_nonfinite()
    if bad is None:
        return None
    where = "in the loss" if bad["layer"] is None else f"at layer {bad['layer']}"
    return f"First non-finite value: step {bad['step']}, {where} ({bad['where']} pass)."


def _steps_line(rec: Record) -> str:
    if not len(rec):
        return "No step was recorded."
    return f"{len(rec)} steps recorded (step {rec.steps[0]} to {rec.steps[-1]})."


def banner(rec: Record) -> dict[str, Any] | None:
    """The status banner at the top of the report; None for a run that ended well.

    Returns:
        None, or {"level": "failed" | "interrupted" | "running" | "nonfinite",
        "headline": str, "lines": list[str]}.
    """
    meta = rec.meta
    status = rec.status
    nonfinite = _nonfinite_line(rec)
    if status in (None, "done") and nonfinite is None:
        return None
    headline = {
        "failed": "This run failed.",
        "interrupted": "This run was interrupted: the report shows the steps recorded "
        "before it stopped.",
        "running": "This run is still running: the report shows the steps flushed so far "
        f"(last flush {meta.get('last_flush') or 'not yet'}).",
    }.get(status, "A value went non-finite in this run.")
    lines = [f"Error: {meta['error']}"] if meta.get("error") else []
    if meta.get("status_inferred"):
        lines.append("Its process is gone without closing the run (killed or crashed).")
    lines += [line for line in (nonfinite, _steps_line(rec)) if line]
    level = status if status in ("failed", "interrupted", "running") else "nonfinite"
    return {"level": level, "headline": headline, "lines": lines}


def status_line(rec: Record) -> str:
    """The run in one line: status, steps, loss from first to last."""
    status = rec.status or "in memory"
    line = f"{status}, {len(rec)} steps"
    losses = rec.loss[np.isfinite(rec.loss)]
    if losses.size:
        line += f", loss {number(losses[0])} → {number(losses[-1])}"
    return line


def config_rows(config: Any) -> list[tuple[str, str]]:
    """(key, value) rows of run.json's config; nested values as compact JSON."""
    if not isinstance(config, Mapping):
        return [] if config is None else [("config", json.dumps(config, default=str))]
    return [(str(k), _json_text(v)) for k, v in config.items()]


def run_rows(meta: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(key, value) rows of the rest of run.json (name, status, times, versions, ...);
    keys without a value (an error of None) are left out."""
    return [
        (str(k), _json_text(v)) for k, v in meta.items() if k not in _RUN_SKIP and v is not None
    ]


def _json_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def evaluation_table(meta: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The lab trainer's per-epoch evaluation from run.json: (columns, rows of text)."""
    rows = meta.get("evaluation")
    if not isinstance(rows, list) or not rows or not all(isinstance(r, Mapping) for r in rows):
        return [], []
    columns = list(dict.fromkeys(k for r in rows for k in r))
    cells = [
        [value_text(math.nan if r.get(c) is None else r[c]) if c in r else "-" for c in columns]
        for r in rows
    ]
    return columns, cells
