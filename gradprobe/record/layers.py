"""The layer list of a run: validated rows for the store, and how two lists differ."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any


def layer_rows(layer_info: Sequence[Mapping[str, Any]]) -> list[tuple[int, str, Any, str]]:
    """Rows (idx, name, type, info as JSON) for the `layers` table, in forward order.

    Raises:
        ValueError: an entry has no string "name", or names repeat.
    """
    rows = []
    for idx, entry in enumerate(layer_info):
        name = entry.get("name") if isinstance(entry, Mapping) else None
        if not isinstance(name, str) or not name:
            raise ValueError(f"layer_info[{idx}] needs a non-empty string 'name'; got {entry!r}")
        info = {"name": name, "type": None, **entry}
        # default=str: a dtype or torch.Size in the info must not stop a flush.
        rows.append((idx, name, info["type"], json.dumps(info, default=str)))
    names = [row[1] for row in rows]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"layer names must be unique; repeated: {repeated}")
    return rows


def layer_difference(stored: Sequence[tuple], given: Sequence[tuple]) -> str:
    """How two lists of (name, type) differ, in words; "" when they are equal."""
    stored, given = [tuple(p) for p in stored], [tuple(p) for p in given]
    if stored == given:
        return ""
    words = [f"{len(stored)} layers stored, {len(given)} given"]
    first = next(
        (i for i, (a, b) in enumerate(zip(stored, given)) if a != b), min(len(stored), len(given))
    )
    if first < min(len(stored), len(given)):
        words.append(f"layer {first} is {_show(stored[first])} stored, {_show(given[first])} given")
    only_stored = [name for name, _ in stored if name not in {n for n, _ in given}]
    only_given = [name for name, _ in given if name not in {n for n, _ in stored}]
    if only_stored:
        words.append(f"only stored: {only_stored}")
    if only_given:
        words.append(f"only given: {only_given}")
    return "; ".join(words)


def _show(pair: tuple) -> str:
    name, kind = pair
    return f"{name!r} ({kind})"
