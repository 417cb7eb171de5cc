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

    Args:
        max_stride: the stride stops growing here (a power of 10): with 100, every 100th
            step from step 100 on, for as long as the run lasts. None: it keeps growing.
    """

    def __init__(self, max_stride: int | None = None) -> None:
        if max_stride is not None and (
            isinstance(max_stride, bool)
            or not isinstance(max_stride, int)
            or max_stride < 1
            or 10 ** round(math.log10(max_stride)) != max_stride
        ):
            raise ValueError(f"max_stride={max_stride!r} must be None or a power of 10: 1, 10, ...")
        self.max_stride = max_stride

    def __call__(self, step: int) -> bool:
        if step < 10:
            return True
        stride = 10 ** int(math.log10(step))
        if self.max_stride is not None:
            stride = min(stride, self.max_stride)
        return step % stride == 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LogSpaced) and other.max_stride == self.max_stride

    def __hash__(self) -> int:
        return hash(("LogSpaced", self.max_stride))

    def __repr__(self) -> str:
        return "LogSpaced()" if self.max_stride is None else f"LogSpaced({self.max_stride})"


# The default detail schedule (watch(detail_every="log100")): steps 0-9, every 10th to 100,
# then every 100th. A detail step costs ~35% of a step of the 784-1000-750-500-10 MLP
# (~17 passes over parameter-sized memory, BENCHMARKS.md): 1 in 10 was ~3.5% of every
# step, 1 in 100 is ~0.4%, while the first 100 steps, where a bad initialisation or
# learning rate shows, keep 19 detail measurements.
PRESETS: dict[str, Schedule] = {"log": LogSpaced(), "log100": LogSpaced(100)}


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
