"""Rank the candidates: (1) the target findings resolved on every seed, then the fewest new
findings, then no loss regression (a loss after the budget that is not below the unchanged
model's means training got worse: a problem of its own, like a new finding), (2) per-layer
gain nearest 1 across depth and time, (3) the lowest loss after the budget; ties go to the
catalogue's fixed order, so the same seeds give the same ranking.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gradprobe.lab.fixes.plan import Plan
from gradprobe.lab.fixes.trials import TrialRun
from gradprobe.record.record import Record


def gain_spread(record: Record) -> float:
    """Mean |ln gain| over the links of the chain, across depth and time: 0 when every
    layer (and time step) passes the gradient on unchanged.

    Depth links are those of the diagnosis (per-unit delta_norm, layers feeding a
    BatchNorm skipped, median over the recorded steps before any non-finite value);
    time links come from delta_norm_t of each recurrent layer.

    Returns:
        a float >= 0; NaN when no link was measured (a one-layer model).
    """
    from gradprobe.diagnose.rules.common import healthy_rows
    from gradprobe.diagnose.rules.depth import unit_log_delta
    from gradprobe.diagnose.rules.gains import link_log_gains, log_norms

    limit = healthy_rows(record)
    links: list[np.ndarray] = []
    if "delta_norm" in record and limit > 0:
        logs, kept, _ = unit_log_delta(record, limit)
        if len(kept) >= 2:
            links.append(link_log_gains(logs))
    series = record.series.get("delta_norm_t")
    if series is not None and limit > 0:
        for col in range(series.shape[1]):
            logs = log_norms(series[:limit, col, :])
            if logs.shape[1] >= 2 and np.isfinite(logs).any():
                links.append(link_log_gains(logs))
    values = np.concatenate(links) if links else np.array([])
    values = values[np.isfinite(values)]
    return float(np.mean(np.abs(values))) if values.size else math.nan


def _mean(values: Sequence[float]) -> float:
    """The mean, NaN if any value is NaN or there are none."""
    vals = list(values)
    return float(np.mean(vals)) if vals and all(map(math.isfinite, vals)) else math.nan


def _last(value: float) -> float:
    """NaN sorts last."""
    return value if math.isfinite(value) else math.inf


@dataclass
class Ranked:
    """One candidate over its seeds.

    Attributes:
        name: the candidate ("relu_he", "he_init+clip_grad", "baseline").
        remedies: the remedy names it combines.
        plan: what it changed.
        runs: one TrialRun per seed.
        resolved: target findings absent on every seed.
        remaining: target findings present on some seed (or a failed run).
        new: findings on some seed that neither the targets nor the baseline had.
        regressed: the loss after the budget is not below the baseline's (or not finite).
        gain_spread: mean over seeds of `gain_spread` (NaN if not measured).
        loss_start, loss_end: mean over seeds of the reference loss (NaN if a seed's
            loss became non-finite).
        order: the tie-break: position in the catalogue.
        rank: 1 for the best remedy; 0 for the baseline.
    """

    name: str
    remedies: tuple[str, ...]
    plan: Plan
    runs: list[TrialRun]
    resolved: tuple[str, ...] = ()
    remaining: tuple[str, ...] = ()
    new: tuple[str, ...] = ()
    regressed: bool = False
    gain_spread: float = math.nan
    loss_start: float = math.nan
    loss_end: float = math.nan
    order: tuple[int, ...] = ()
    rank: int = 0

    @property
    def failed(self) -> list[TrialRun]:
        return [r for r in self.runs if r.status == "failed"]

    def key(self) -> tuple:
        """The sort key: smaller is better."""
        return (
            len(self.remaining),
            len(self.new),
            self.regressed,
            _last(self.gain_spread),
            _last(self.loss_end),
            len(self.remedies),
            self.order,
        )

    def __repr__(self) -> str:
        return (
            f"Ranked({self.name!r}, rank={self.rank}, resolved={list(self.resolved)}, "
            f"new={list(self.new)}, spread={self.gain_spread:.3g}, loss_end={self.loss_end:.3g})"
        )


def score(
    ranked: Ranked, targets: Sequence[str], baseline_labels: set[str], base_loss: float = math.inf
) -> Ranked:
    """Fill in the resolved / remaining / new findings, the mean figures of `ranked` and
    whether its loss regressed against `base_loss` (the baseline's loss_end; NaN or inf
    for a baseline whose loss broke, which any finite loss beats)."""
    runs = ranked.runs
    seen = set().union(*(set(r.labels) for r in runs)) if runs else set()
    failed = bool(ranked.failed) or not runs
    ranked.remaining = tuple(t for t in targets if failed or t in seen)
    ranked.resolved = tuple(t for t in targets if t not in ranked.remaining)
    ranked.new = tuple(sorted(seen - set(targets) - baseline_labels))
    done = [r for r in runs if r.status != "failed"]
    ranked.gain_spread = _mean([r.gain_spread for r in done]) if not failed else math.nan
    ranked.loss_start = _mean([r.loss_start for r in done]) if not failed else math.nan
    ranked.loss_end = _mean([r.loss_end for r in done]) if not failed else math.nan
    ranked.regressed = not _last(ranked.loss_end) < _last(base_loss)
    return ranked


def rank(candidates: list[Ranked]) -> list[Ranked]:
    """The candidates, best first, with `rank` set from 1."""
    ordered = sorted(candidates, key=Ranked.key)
    for i, cand in enumerate(ordered, start=1):
        cand.rank = i
    return ordered
