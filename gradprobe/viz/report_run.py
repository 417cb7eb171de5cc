"""One run of the report: its Record, findings, per-layer table, figures and config."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gradprobe.diagnose.diagnosis import diagnose
from gradprobe.diagnose.finding import Finding
from gradprobe.diagnose.report import FILENAME, read_findings
from gradprobe.record.format import SUMMARY_QUANTITIES
from gradprobe.record.load import load
from gradprobe.record.record import Record
from gradprobe.viz import report_embed, report_text

# The per-layer table: the quantities `gradprobe show` tabulates.
TABLE_QUANTITIES = SUMMARY_QUANTITIES
# The files a run's writer touches; findings.json older than any of them is stale.
_DATA_FILES = ("run.json", "metrics.sqlite", "metrics.sqlite-wal")


@dataclass(frozen=True, repr=False)
class RunSource:
    """A run to report on: its Record and, when it came from disk, its directory."""

    record: Record
    run_dir: Path | None
    name: str

    def __repr__(self) -> str:
        return f"RunSource({self.name!r}, {self.record!r})"


def as_source(run: Any, index: int) -> RunSource:
    """A run directory (str or Path) or a Record as a RunSource.

    Raises:
        FileNotFoundError, NotADirectoryError: the directory is missing or holds no run.
        TypeError: `run` is neither a path nor a Record.
    """
    if isinstance(run, Record):
        return RunSource(run, None, str(run.meta.get("name") or f"run {index + 1}"))
    if isinstance(run, (str, Path)):
        rec = load(run)
        return RunSource(rec, Path(run), str(rec.meta.get("name") or Path(run).name))
    raise TypeError(
        f"a run must be a run directory (str or Path) or a gradprobe Record; "
        f"got {type(run).__name__}"
    )


def _fresh_findings(run_dir: Path) -> list[Finding] | None:
    path = run_dir / FILENAME
    if not path.is_file():
        return None
    data = [run_dir / name for name in _DATA_FILES if (run_dir / name).exists()]
    if any(p.stat().st_mtime_ns > path.stat().st_mtime_ns for p in data):
        return None  # the run has changed since `gradprobe diagnose` wrote it
    try:
        return read_findings(run_dir)
    except (ValueError, KeyError, TypeError):
        return None  # unreadable: diagnose again rather than fail the report


def findings_of(source: RunSource, given: Sequence[Finding] | None) -> tuple[list, str]:
    """The run's findings and where they came from, in words.

    Given ones win; then RUN_DIR/findings.json when it is newer than the run's data;
    else `gp.diagnose` with the default thresholds.
    """
    if given is not None:
        return list(given), "Findings as given to write_report."
    if source.run_dir is not None:
        stored = _fresh_findings(source.run_dir)
        if stored is not None:
            return stored, f"Findings from {FILENAME} (written by gradprobe diagnose)."
    return diagnose(source.record), "Findings of gp.diagnose with the default thresholds."


def last_measured(column: np.ndarray) -> float:
    """The last non-NaN entry of `column` (shape (n_steps,)); NaN when there is none."""
    measured = np.flatnonzero(~np.isnan(column))
    return float(column[measured[-1]]) if measured.size else math.nan


def layer_rows(rec: Record, quantities: Sequence[str]) -> list[dict[str, Any]]:
    """One row per layer in forward order: each quantity at the last step it was measured.

    Each cell holds "value" (repr of the float, or "nan"), for the HTML's data-value,
    and "text", the number as shown.
    """
    rows = []
    for i, info in enumerate(rec.layer_info):
        cells = []
        for q in quantities:
            value = last_measured(rec[q][:, i]) if q in rec else math.nan
            cells.append({"quantity": q, "value": repr(value), "text": report_text.number(value)})
        rows.append({"layer": info["name"], "type": info.get("type") or "-", "cells": cells})
    return rows


@dataclass(repr=False)
class RunView:
    """Everything the template shows of one run (built by `build_view`)."""

    name: str
    anchor: str
    status: str
    n_steps: int
    status_line: str
    banner: dict | None
    findings: list[Finding]
    findings_source: str
    rows: list[dict]
    config: list[tuple[str, str]]
    meta_rows: list[tuple[str, str]]
    evaluation: tuple[list[str], list[list[str]]]
    figures: list = field(default_factory=list)
    theory: Any = None  # a report_theory.TheoryView when a prediction was given

    @property
    def finding_views(self) -> list[dict]:
        """The findings as the template shows them."""
        return [report_text.finding_view(f) for f in self.findings]

    @property
    def counts(self) -> list[tuple[str, int]]:
        """(severity, count), most serious first."""
        return report_text.severity_counts(self.findings)

    def __repr__(self) -> str:
        return (
            f"RunView({self.name!r}, {self.status}, {len(self.findings)} findings, "
            f"{len(self.rows)} layers, {len(self.figures)} figures)"
        )


def figure_names(rec: Record, wanted: Sequence[str] | None, model: Any) -> list[str]:
    """The figures to draw: `wanted`, else all the record can draw (plus the decision
    surface when a model is given); none for a record without steps."""
    if wanted is not None:
        return list(wanted)
    if not len(rec) or not rec.layers:
        return []
    names = list(report_embed.figures_module().available(rec))
    return names + (["decision_surface"] if model is not None else [])


def build_view(source: RunSource, index: int, findings: Sequence[Finding] | None) -> RunView:
    """The run's view, without its figures (`report_embed.draw` adds those)."""
    rec = source.record
    found, where = findings_of(source, findings)
    meta = rec.meta
    return RunView(
        name=source.name,
        anchor=f"run-{index + 1}",
        status=rec.status or "in memory",
        n_steps=len(rec),
        status_line=report_text.status_line(rec),
        banner=report_text.banner(rec),
        findings=found,
        findings_source=where,
        rows=layer_rows(rec, TABLE_QUANTITIES),
        config=report_text.config_rows(meta.get("config")),
        meta_rows=report_text.run_rows(meta),
        evaluation=report_text.evaluation_table(meta),
    )
