"""The published figures and claims of the classic experiments, read from published.json.

One data file holds every number we compare against, each with its source (citation and
URL), so no published value is typed into code. `published(name)` gives one experiment's
entry; `Published.value(key)` a figure, `Published.claim(key)` a claim's text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

DATA_FILE = "published.json"


@dataclass(frozen=True)
class Figure:
    """One published number: its value, the decimals printed (None: an order of magnitude),
    a label and a unit."""

    key: str
    value: float
    label: str
    decimals: int | None = None
    unit: str = ""

    @property
    def rounding(self) -> float:
        """Half a unit in the last printed decimal: how far the true value may lie from the
        printed one by rounding alone (0 when no decimals are given)."""
        return 0.0 if self.decimals is None else 0.5 * 10.0 ** (-self.decimals)


@dataclass(frozen=True)
class Published:
    """One experiment's published figures and claims, with the source they come from."""

    name: str
    title: str
    source: str
    url: str | None
    seeded: bool
    setup: str
    figures: dict[str, Figure] = field(default_factory=dict)
    claims: dict[str, str] = field(default_factory=dict)

    def figure(self, key: str) -> Figure:
        """The Figure called `key`; KeyError listing the keys this experiment has."""
        if key not in self.figures:
            raise KeyError(
                f"{self.name} has no published figure {key!r}; "
                f"it has: {', '.join(self.figures) or 'none'}"
            )
        return self.figures[key]

    def value(self, key: str) -> float:
        """The published value of figure `key`."""
        return self.figure(key).value

    def claim(self, key: str) -> str:
        """The text of published claim `key`; KeyError listing the claims."""
        if key not in self.claims:
            raise KeyError(
                f"{self.name} has no published claim {key!r}; "
                f"it has: {', '.join(self.claims) or 'none'}"
            )
        return self.claims[key]

    def __repr__(self) -> str:
        return (
            f"Published({self.name!r}, {len(self.figures)} figures, {len(self.claims)} claims, "
            f"source={self.source[:40]!r}...)"
        )


@lru_cache(maxsize=1)
def _raw() -> dict[str, Any]:
    text = resources.files(__package__).joinpath(DATA_FILE).read_text(encoding="utf-8")
    return {k: v for k, v in json.loads(text).items() if not k.startswith("_")}


def names() -> tuple[str, ...]:
    """The experiments with published figures, in the file's order."""
    return tuple(_raw())


def _figure(key: str, entry: dict[str, Any]) -> Figure:
    return Figure(
        key=key,
        value=float(entry["value"]),
        label=entry["label"],
        decimals=entry.get("decimals"),
        unit=entry.get("unit", ""),
    )


def published(name: str) -> Published:
    """The published figures and claims of experiment `name` (e.g. "nielsen-speed").

    Raises:
        ValueError: `name` is not an experiment of the data file (the message lists them).
    """
    raw = _raw()
    if name not in raw:
        raise ValueError(f"experiment {name!r} is not one of: {', '.join(raw)}")
    entry = raw[name]
    return Published(
        name=name,
        title=entry["title"],
        source=entry["source"],
        url=entry.get("url"),
        seeded=bool(entry.get("seeded", False)),
        setup=entry.get("setup", ""),
        figures={k: _figure(k, v) for k, v in entry.get("figures", {}).items()},
        claims=dict(entry.get("claims", {})),
    )
