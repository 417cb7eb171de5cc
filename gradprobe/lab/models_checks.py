"""Argument checks the model builders share (gradprobe.lab.models, models_recurrent).

Each raises ValueError naming the argument, the value given and what is allowed.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

NORMS: tuple[str, ...] = ("batch", "layer")


def _check_positive_ints(**values) -> None:
    for label, value in values.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{label}={value!r} must be an int >= 1")


def _check_norm(norm: str | None) -> str | None:
    """None and "none" mean no normalisation; otherwise one of `NORMS`."""
    if norm is None or norm == "none":
        return None
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r} is not one of: none, {', '.join(NORMS)}")
    return norm


def _check_sizes(sizes: Sequence[int]) -> list[int]:
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError(f"sizes={sizes!r} needs at least [n_in, n_out]")
    _check_positive_ints(**{f"sizes[{i}]": n for i, n in enumerate(sizes)})
    return [int(n) for n in sizes]
