"""Schedules: plain callables `step -> bool` saying whether a step is recorded."""

from __future__ import annotations

import math
from collections.abc import Callable

Schedule = Callable[[int], bool]


class Every:
    """Record every n-th step, starting at step 0."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __call__(self, step: int) -> bool:
        return step % self.n == 0

    def __repr__(self) -> str:
        return f"Every({self.n})"


class LogSpaced:
    """Record steps 0-9, then every 10th to 100, every 100th to 1000, ...

    Early training changes fastest; this keeps a long run's record small while
    resolving the first steps, where vanishing or exploding gradients show first.
    """

    def __call__(self, step: int) -> bool:
        if step < 10:
            return True
        stride = 10 ** int(math.log10(step))
        return step % stride == 0

    def __repr__(self) -> str:
        return "LogSpaced()"


PRESETS: dict[str, Schedule] = {"log": LogSpaced()}


def as_schedule(every: int | str | Schedule, name: str = "every") -> Schedule:
    """A schedule from an int (every n-th step), a preset name, or a callable.

    Args:
        every: the value given.
        name: the argument's name, for error messages.
    """
    allowed = f"a positive int, a preset name ({', '.join(PRESETS)}) or a callable step -> bool"
    if isinstance(every, bool):
        raise TypeError(f"{name}={every!r} must be {allowed}")
    if isinstance(every, int):
        if every < 1:
            raise ValueError(f"{name}={every} must be {allowed} (1 means every step)")
        return Every(every)
    if isinstance(every, str):
        if every not in PRESETS:
            raise ValueError(f"{name}={every!r} is not one of the presets: {', '.join(PRESETS)}")
        return PRESETS[every]
    if callable(every):
        return every
    raise TypeError(f"{name}={every!r} ({type(every).__name__}) must be {allowed}")
