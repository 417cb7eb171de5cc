"""A plain-text table fitted to a terminal width: the columns that hold names and lists
wrap (at ", ", "+", "_", "@" and spaces), the short numeric ones keep their width."""

from __future__ import annotations

import re
from collections.abc import Sequence

GAP = "  "  # between columns
# The narrowest a wrapping column gets: five such columns, two fixed ones and the gaps
# then fit 80 characters (the classic terminal), and the pieces of a finding kind split
# at "_" stay whole but "classification" (14).
MIN_WIDTH = 12
_BREAK = re.compile(r"(?<=[ +_@])")  # a line may end after any of these


def wrap(text: str, width: int) -> list[str]:
    """`text` in lines of at most `width` characters, broken after a separator where
    one fits, else inside a word."""
    if width < 1:
        raise ValueError(f"width={width!r} must be an int >= 1")
    lines, line = [], ""
    for token in _BREAK.split(text):
        if len((line + token).rstrip()) <= width:
            line += token
            continue
        if line.strip():
            lines.append(line.rstrip())
        while len(token.rstrip()) > width:  # a piece longer than the column
            lines.append(token[:width])
            token = token[width:]
        line = token
    lines.append(line.rstrip())
    return lines


def column_widths(rows: Sequence[Sequence[str]], fixed: set[int], width: int) -> list[int]:
    """Each column's width so a row fits in `width` characters: columns in `fixed` keep
    their longest cell; the others share what is left, the narrow ones first, none
    below min(MIN_WIDTH, its longest cell) or its header (rows[0])."""
    n = len(rows[0])
    natural = [max(len(r[i]) for r in rows) for i in range(n)]
    widths = list(natural)
    flex = sorted((i for i in range(n) if i not in fixed), key=lambda i: natural[i])
    left = width - sum(natural[i] for i in fixed) - len(GAP) * (n - 1)
    for k, i in enumerate(flex):
        share = left // (len(flex) - k)
        floor = max(len(rows[0][i]), min(MIN_WIDTH, natural[i]))
        widths[i] = max(min(natural[i], share), floor)
        left -= widths[i]
    return widths


def render(rows: Sequence[Sequence[str]], widths: Sequence[int]) -> list[str]:
    """The rows as text lines, each cell wrapped to its column's width."""
    out = []
    for row in rows:
        cells = [wrap(cell, w) for cell, w in zip(row, widths)]
        for k in range(max(len(c) for c in cells)):
            parts = [(c[k] if k < len(c) else "").ljust(w) for c, w in zip(cells, widths)]
            out.append(GAP.join(parts).rstrip())
    return out
