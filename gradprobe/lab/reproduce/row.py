"""`Row`: one published figure beside our values over seeds, and whether they agree."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradprobe.lab.reproduce.published import Figure

# Agreement: the published value lies within K_SD standard deviations of our seed mean
# (about 95% of a normal seed-to-seed spread), or within its own printing rounding.
K_SD = 2.0


def finite_or_none(x: float) -> float | None:
    """x as a float, or None where it is NaN or infinite (JSON has neither)."""
    return float(x) if math.isfinite(x) else None


@dataclass(frozen=True)
class Row:
    """One published figure beside ours.

    Attributes:
        key, label, unit: the figure's key in published.json, its label and unit.
        published: the published value.
        values: ours, one per seed, shape (n,); NaN where a run produced none.
        agrees: whether the published value lies within `tolerance` of our mean.
        tolerance: the distance allowed: max(K_SD x our seed sd, the figure's printing
            rounding, the experiment's own tolerance).
        reason: the comparison in words, with the numbers.
        why: the experiment's explanation of a difference (unseeded original, ...).
    """

    key: str
    label: str
    published: float
    values: tuple[float, ...]
    agrees: bool
    tolerance: float
    reason: str
    unit: str = ""
    why: str = ""

    @classmethod
    def compare(
        cls,
        figure: Figure,
        values: Sequence[float],
        *,
        tolerance: float = 0.0,
        k_sd: float = K_SD,
        why: str = "",
    ) -> Row:
        """Compare a published `figure` with our `values` (one per seed).

        Args:
            figure: the published figure (`Published.figure(key)`).
            values: our values, one per seed; at least one.
            tolerance: an extra absolute tolerance the experiment justifies (e.g. the
                resolution of an accuracy measured on 500 points); 0 by default.
            k_sd: how many of our seed standard deviations count as agreement.
            why: why ours may differ; shown with the row.

        Raises:
            ValueError: no values, or a negative tolerance / k_sd.
        """
        vals = tuple(float(v) for v in values)
        if not vals:
            raise ValueError(f"no values given for {figure.key!r}; need one per seed")
        if tolerance < 0 or k_sd < 0:
            raise ValueError(f"tolerance={tolerance} and k_sd={k_sd} must be >= 0")
        finite = np.array([v for v in vals if math.isfinite(v)])
        mean = float(finite.mean()) if len(finite) else math.nan
        sd = float(finite.std(ddof=1)) if len(finite) > 1 else 0.0
        allowed = max(k_sd * sd, figure.rounding, tolerance)
        gap = abs(figure.value - mean)
        agrees = bool(gap <= allowed)  # False when every value is NaN
        return cls(
            key=figure.key,
            label=figure.label,
            published=figure.value,
            values=vals,
            agrees=agrees,
            tolerance=allowed,
            reason=_reason(figure.value, mean, sd, len(finite), gap, allowed, k_sd),
            unit=figure.unit,
            why=why,
        )

    @property
    def n(self) -> int:
        """Number of our values that are finite."""
        return int(np.isfinite(self.values).sum())

    @property
    def mean(self) -> float:
        """Our mean over seeds (finite values only); NaN when there are none."""
        v = np.asarray(self.values)
        v = v[np.isfinite(v)]
        return float(v.mean()) if len(v) else math.nan

    @property
    def spread(self) -> float:
        """Our seed-to-seed standard deviation (ddof=1); 0 with a single value."""
        v = np.asarray(self.values)
        v = v[np.isfinite(v)]
        return float(v.std(ddof=1)) if len(v) > 1 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The row for JSON: published, our mean, spread, n, values, verdict."""
        return {
            "key": self.key,
            "label": self.label,
            "unit": self.unit,
            "published": self.published,
            "mean": finite_or_none(self.mean),
            "spread": finite_or_none(self.spread),
            "n": self.n,
            "values": [finite_or_none(v) for v in self.values],
            "agrees": self.agrees,
            "tolerance": self.tolerance,
            "reason": self.reason,
            "why": self.why,
        }

    def __repr__(self) -> str:
        verdict = "agrees" if self.agrees else "differs"
        return (
            f"Row({self.key!r}: published {self.published:.4g}, ours {self.mean:.4g} "
            f"+- {self.spread:.2g} (n={self.n}), {verdict})"
        )


def _reason(pub: float, mean: float, sd: float, n: int, gap: float, allowed: float, k: float):
    if not math.isfinite(mean):
        return f"no finite value of ours to compare with the published {pub:.4g}"
    spread = f"{k:g} sd = {k * sd:.3g} over {n} values" if n > 1 else "one value, no spread"
    if gap <= allowed:
        return f"published {pub:.4g} is within {allowed:.3g} of our mean {mean:.4g} ({spread})"
    far = f" ({gap / sd:.1f} sd)" if sd > 0 else ""
    return f"published {pub:.4g} is {gap:.3g} from our mean {mean:.4g}{far}; allowed {allowed:.3g}"
