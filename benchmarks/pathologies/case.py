"""A benchmark case: a seeded run that returns a Record, and the findings it should get."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

import gradprobe as gp
from benchmarks.pathologies.data import Batches
from gradprobe.diagnose.finding import AXES, KINDS  # DESIGN.md's vocabulary


def label(kind: str, axis: str | None = None) -> str:
    """A finding's key for scoring: its kind, with "@time" when it is about time steps.

    Depth is the default axis, so a finding without an axis counts as depth.
    """
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not one of: {', '.join(KINDS)}")
    if axis not in (None, *AXES):
        raise ValueError(f"axis={axis!r} is not one of: None, {', '.join(AXES)}")
    return f"{kind}@time" if axis == "time" else kind


@dataclass
class Outcome:
    """What a case's builder returns.

    Attributes:
        record: the probe's Record of the run.
        lint_args: (model, batch, loss_fn) for the static lints, or None.
    """

    record: gp.Record
    lint_args: tuple[nn.Module, Any, Callable] | None = None


@dataclass(frozen=True)
class Case:
    """One known run.

    Attributes:
        name: unique, snake_case.
        build: runs the case (seeded) and returns its Outcome.
        expected: the finding keys (see `label`) a careful human reads off the numbers;
            empty for a healthy case.
        why: one line saying why the case is labelled so (README.md has the numbers).
        either: keys in a grey zone, where a careful human could answer either way (a
            loss that falls slowly: a plateau or not?); found or not, they do not count.
    """

    name: str
    build: Callable[[], Outcome]
    expected: frozenset[str]
    why: str
    either: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        both = self.expected & self.either
        if both:
            raise ValueError(f"case {self.name!r}: {sorted(both)} both expected and either")

    @property
    def healthy(self) -> bool:
        return not self.expected

    def __repr__(self) -> str:
        either = f", either={sorted(self.either)}" if self.either else ""
        return f"Case({self.name!r}, expected={sorted(self.expected)}{either})"


def train(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    data: Batches,
    loss_fn: Callable,
    steps: int,
    lr_at: dict[int, float] | None = None,
) -> Outcome:
    """Train `steps` steps with the probe watching and the loss logged.

    Args:
        lr_at: {step: lr} changes of every group's learning rate from that step on.
    """
    with gp.watch(model, optimizer=opt) as probe:
        for step in range(steps):
            for group in opt.param_groups if step in (lr_at or {}) else ():
                group["lr"] = lr_at[step]
            x, y = data.batch(step)
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            probe.log_loss(loss)
    return Outcome(probe.record(), (model, data.batch(0), loss_fn))


def at_init(model: nn.Module, data: Batches, loss_fn: Callable, passes: int) -> Outcome:
    """Forward and backward on `passes` batches at the initial weights, no update.

    The loss is not logged: without training its course says nothing about plateaus or
    divergence, and the update quantities are off (weight_change=False) for the same reason.
    Every pass is measured in detail (detail_every=1): there are only a handful.
    """
    with gp.watch(model, weight_change=False, detail_every=1) as probe:
        for i in range(passes):
            x, y = data.batch(i)
            model.zero_grad()
            loss_fn(model(x), y).backward()
            probe.step()
    return Outcome(probe.record(), (model, data.batch(0), loss_fn))
