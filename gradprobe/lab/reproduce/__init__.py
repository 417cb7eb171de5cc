"""`gradprobe reproduce`: the classic vanishing-gradient experiments, ours beside theirs.

One module per experiment; each defines `NAME`, `DEFAULT_SEEDS`, `FULL_SEEDS` and
`run(seeds, *, full, out, log) -> Reproduction`. `reproduce(name, ...)` picks the
module, writes OUT/NAME/reproduction.json and returns the Reproduction. The published
figures live in published.json, with their sources.
"""

from __future__ import annotations

from gradprobe.lab.reproduce.published import Figure, Published, published
from gradprobe.lab.reproduce.registry import EXPERIMENTS, NAMES, reproduce, resolve_seeds
from gradprobe.lab.reproduce.result import Check, Reproduction, Row, Section

__all__ = [
    "EXPERIMENTS",
    "NAMES",
    "Check",
    "Figure",
    "Published",
    "Reproduction",
    "Row",
    "Section",
    "published",
    "reproduce",
    "resolve_seeds",
]
