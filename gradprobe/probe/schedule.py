"""Schedules: plain callables `step -> bool` saying whether a step is recorded."""

from __future__ import annotations

import math
from collections.abc import Callable

Schedule = Callable[[int], bool]


class Every:
    """Every n-th step from step 0; with `until` and `then`, every then-th from `until` on.

    Args:
        n: the stride, >= 1.
        until, then: from step `until` on the stride is `then` (steps until, until + then,
            ...); both or neither.
    """

    def __init__(self, n: int, until: int | None = None, then: int | None = None) -> None:
        for name, value in (("n", n), ("until", until), ("then", then)):
            optional = name != "n" and value is None
            if not optional and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ValueError(f"Every: {name}={value!r} must be an int >= 1")
        if (until is None) != (then is None):
            raise ValueError(f"Every: until={until!r} and then={then!r} go together: give both")
        self.n, self.until, self.then = n, until, then

    def __call__(self, step: int) -> bool:
        if self.until is not None and step >= self.until:
            return (step - self.until) % self.then == 0
        return step % self.n == 0

    def _key(self) -> tuple:
        return (self.n, self.until, self.then)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Every) and other._key() == self._key()

    def __hash__(self) -> int:
        return hash(("Every", *self._key()))

    def __repr__(self) -> str:
        if self.until is None:
            return f"Every({self.n})"
        return f"Every({self.n}, until={self.until}, then={self.then})"


# watch()'s default detail schedule: every 10th recorded step for the first 1000, every
# 100th after. A detail step costs ~35% of a step of the 784-1000-750-500-10 MLP (~17 passes
# over parameter-sized memory, BENCHMARKS.md): one in ten is ~3.5% of every step, one in
# a hundred ~0.4%. A run of up to 1000 steps is measured (and diagnosed: the rules were
# calibrated on it, benchmarks/pathologies) as with detail_every=10; a long run, which
# is what the probe is left on for, pays a tenth of that after its first 1000 steps.
DETAIL_EVERY = Every(10, until=1000, then=100)


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
