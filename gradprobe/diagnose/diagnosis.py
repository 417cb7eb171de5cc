"""`diagnose(record, **thresholds) -> list[Finding]`: every rule over one Record."""

from __future__ import annotations

from gradprobe.diagnose.finding import SEVERITIES, Finding
from gradprobe.diagnose.rules.depth import depth_rule
from gradprobe.diagnose.rules.loss import divergence_rule, plateau_rule
from gradprobe.diagnose.rules.nonfinite import nonfinite_rule
from gradprobe.diagnose.rules.time import time_rule
from gradprobe.diagnose.rules.units import units_rule
from gradprobe.diagnose.rules.update import update_rule
from gradprobe.diagnose.thresholds import Thresholds
from gradprobe.record.record import Record

# In the order their findings are listed at equal severity: what stops learning first.
RULES = (
    nonfinite_rule,
    depth_rule,
    time_rule,
    divergence_rule,
    units_rule,
    update_rule,
    plateau_rule,
)


def diagnose(record: Record, thresholds: Thresholds | None = None, **overrides) -> list[Finding]:
    """What is wrong with a run's gradients, each with the layers, steps, cause and fix.

    Args:
        record: a Record (`probe.record()`, `gp.load(run_dir)`).
        thresholds: a full Thresholds; the defaults when None.
        **overrides: single thresholds by name, e.g. `vanish_ratio=1e-3`; see
            `gradprobe.diagnose.thresholds.Thresholds` for every name and its source.

    Returns:
        the findings, most severe first; empty for a healthy run.

    Raises:
        TypeError: `record` is not a Record.
        ValueError: an unknown threshold name or a non-positive value.
    """
    if not isinstance(record, Record):
        raise TypeError(f"diagnose() needs a gradprobe Record; got {type(record).__name__}")
    base = thresholds if thresholds is not None else Thresholds()
    th = Thresholds.of(**{**base.to_dict(), **overrides})
    findings = [f for rule in RULES for f in rule(record, th)]
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    return sorted(findings, key=lambda f: -rank[f.severity])  # stable: rule order kept
