"""Gains along a chain (layers in depth, time steps in a recurrent layer) and the stretch
of the chain where the signal shrinks or grows the most.

Positions are ordered from the input (or t = 0) to the loss (or t = T-1); the gain of a
link is norm[i] / norm[i + 1], so a gain below 1 means the gradient shrinks on its way
back toward the input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gradprobe.diagnose.rules.common import nanmedian

# A zero norm (every unit dead) is a gain of 0, kept finite for the logs: 1e-300 is
# above float64's smallest normal number (2.2e-308).
_TINY = 1e-300


def log_norms(norms: np.ndarray) -> np.ndarray:
    """ln of non-negative norms; NaN where not measured or not finite; zero -> ln 1e-300."""
    norms = np.asarray(norms, dtype=np.float64)
    with np.errstate(all="ignore"):
        out = np.log(np.maximum(norms, _TINY))
    return np.where(np.isfinite(norms), out, np.nan)


def link_log_gains(logs: np.ndarray) -> np.ndarray:
    """Median over rows of ln(norm[i] / norm[i + 1]).

    Args:
        logs: array of shape (n_rows, n_positions), log norms.

    Returns:
        array of shape (n_positions - 1,); NaN where no row measured both ends.
    """
    return nanmedian(logs[:, :-1] - logs[:, 1:], axis=0)


@dataclass(frozen=True)
class Stretch:
    """A run of consecutive links: positions start..stop (inclusive), stop > start."""

    start: int
    stop: int
    log_gains: tuple[float, ...]

    @property
    def n_links(self) -> int:
        return self.stop - self.start

    @property
    def total(self) -> float:
        """norm[start] / norm[stop]: the gain over the whole stretch."""
        return math.exp(sum(self.log_gains))

    @property
    def per_link(self) -> float:
        """The geometric-mean gain per link."""
        return math.exp(sum(self.log_gains) / self.n_links)

    def __repr__(self) -> str:
        return f"Stretch({self.start}..{self.stop}, total={self.total:.3g})"


def worst_stretch(log_gains: np.ndarray, sign: int) -> Stretch | None:
    """The stretch whose summed log-gain is most negative (sign=-1) or positive (sign=+1).

    Kadane's maximum-subarray scan on sign * log_gains; links with no measurement count
    as gain 1. None when no link moves in that direction.
    """
    values = np.nan_to_num(np.asarray(log_gains, dtype=np.float64) * sign, nan=0.0)
    best, best_span = 0.0, None
    run, run_start = 0.0, 0
    for i, value in enumerate(values):
        if run <= 0:
            run, run_start = 0.0, i
        run += value
        if run > best:
            best, best_span = run, (run_start, i)
    if best_span is None:
        return None
    lo, hi = best_span
    gains = tuple(float(g) for g in np.nan_to_num(log_gains[lo : hi + 1], nan=0.0))
    return Stretch(lo, hi + 1, gains)
