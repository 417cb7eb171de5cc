"""Findings out: the run directory's findings.json, and their rendering for the terminal.

rich is imported inside `render` only: `import gradprobe` stays light (DESIGN.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gradprobe.diagnose.finding import SEVERITIES, Finding, span_text
from gradprobe.diagnose.thresholds import Thresholds

FILENAME = "findings.json"
_INDENT = 8  # width of the severity column, "WARNING "
_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def worst_severity(findings: Sequence[Finding]) -> str | None:
    """The most serious severity among the findings; None when there are none."""
    if not findings:
        return None
    return max((f.severity for f in findings), key=SEVERITIES.index)


def payload(findings: Sequence[Finding], thresholds: Thresholds, now: datetime | None = None):
    """The findings.json contents: when it ran, the thresholds used and the findings.

    Args:
        findings: what `diagnose` returned.
        thresholds: the thresholds it used.
        now: the time stamp; the current UTC time when None.
    """
    now = now or datetime.now(timezone.utc)
    return {
        "created": now.isoformat(timespec="seconds"),
        "worst_severity": worst_severity(findings),
        "thresholds": thresholds.to_dict(),
        "findings": [f.to_dict() for f in findings],
    }


def write_findings(run_dir: str | Path, data: dict[str, Any]) -> Path:
    """Write `payload(...)` to RUN_DIR/findings.json atomically; returns the path."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"no run directory at {run_dir}")
    path = run_dir / FILENAME
    tmp = path.with_name(FILENAME + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)  # readers never see a half-written file
    return path


def read_findings(run_dir: str | Path) -> list[Finding]:
    """The findings a previous `write_findings` left in RUN_DIR/findings.json."""
    path = Path(run_dir) / FILENAME
    if not path.is_file():
        raise FileNotFoundError(f"no {FILENAME} in {run_dir}: run `gradprobe diagnose` first")
    return [Finding.from_dict(d) for d in json.loads(path.read_text())["findings"]]


def render(findings: Sequence[Finding], console=None, header: str | None = None) -> None:
    """Print the findings: a headline per finding, then its numbers, cause and fix.

    Args:
        findings: the findings, most severe first.
        console: a rich Console; a new one when None.
        header: a first line (e.g. the run's name and status), printed as is.
    """
    from rich.console import Console
    from rich.padding import Padding
    from rich.text import Text

    console = console or Console(highlight=False)
    if header:
        console.print(header, markup=False)
    if not findings:
        console.print("no findings: the gradients look healthy", markup=False)
        return
    counts = {s: sum(f.severity == s for f in findings) for s in reversed(SEVERITIES)}
    console.print(", ".join(f"{n} {s}" for s, n in counts.items() if n), markup=False)
    for f in findings:
        head = Text(f"{f.severity.upper():{_INDENT}}", style=_STYLE[f.severity])
        head.append(f.kind + (" along time" if f.axis == "time" else ""), style="bold")
        head.append(f" at {f.place}" if f.place else "")
        head.append(f" ({span_text(f.steps)})" if f.steps else "")
        console.print(head)
        for label, text in (("", f.summary), ("cause: ", f.cause), ("fix: ", f.fix)):
            if text:
                # indented by the severity column; wrapped lines keep the indent
                console.print(Padding(Text(label + text), (0, 0, 0, _INDENT), expand=False))
