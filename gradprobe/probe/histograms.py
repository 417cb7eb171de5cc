"""Gradient histograms per layer, on a schedule: the series "grad_hist".

On the recorded steps its schedule picks, the probe counts the |g| of every parameter
gradient of each layer (weights and biases) into the fixed log-spaced bins of
gradprobe.stats.histogram, where it reads the other gradient statistics: at the
optimizer's pre-step hook, after accumulation and AMP unscaling. Counts stay on the
device until the flush, in a ring that holds only the steps with a histogram.

Under torch.distributed (distribute()) each rank counts the local shard of the
parameters it adds to the sums (gradprobe.probe.distributed.contributes: a replicated
parameter on one rank, every non-empty shard of a sharded one) and the flush sums the
rings over ranks, so the counts are those of the whole model's gradients. Every rank
keeps a slot for every histogram step (NaN when it adds nothing), so the rings' rows
line up: the ranks share the schedule.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from gradprobe.probe.distributed_group import local
from gradprobe.probe.layers import Layer
from gradprobe.probe.schedule import Schedule, as_schedule
from gradprobe.stats.histogram import N_BINS, HistogramPlan

NAME = "grad_hist"


def histogram_schedule(histograms: Any) -> Schedule | None:
    """The schedule of watch(histograms=...): None when off.

    Args:
        histograms: None or False (off, the default: histograms are opt-in, DESIGN.md);
            an int n >= 1: every n-th recorded step (0, n, 2n, ...); a preset name or a
            callable taking the recorded step's index 0, 1, 2, ..., as `detail_every`.

    Raises:
        ValueError, TypeError: any other value, saying what is allowed.
    """
    if histograms is None or histograms is False:
        return None
    allowed = (
        "None or False (off), a positive int n (every n-th recorded step), a preset name "
        "or a callable recorded_step -> bool"
    )
    if histograms is True:
        raise ValueError(f"histograms=True does not say how often; give {allowed}, e.g. 100")
    try:
        return as_schedule(histograms, name="histograms")
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"histograms={histograms!r} is not allowed: give {allowed}") from None


class HistogramRing:
    """Per-layer histograms of the recorded steps that have one, drained per flush.

    Only steps with a histogram take memory on the device: (such steps, n_layers,
    N_BINS), grown by doubling up to `capacity`, not (capacity, n_layers, N_BINS).
    drain() gives the Flusher the same block as a SeriesBuffer, NaN on other steps.

    Args:
        name: the series' name in a Record.
        capacity: rows of the StepBuffer it is aligned with.
        n_layers: layers (state rows).
        device: where the counts live.
    """

    def __init__(self, name: str, capacity: int, n_layers: int, device) -> None:
        self.name = name
        self.capacity = capacity
        self.n_layers = n_layers
        self.device = device
        self.rows: list[int] = []  # the StepBuffer row of each slot
        self.data = torch.empty((0, n_layers, N_BINS), dtype=torch.float64, device=device)

    def put(self, row: int, counts: torch.Tensor) -> None:
        """Store counts (n_layers, N_BINS) for the step in StepBuffer row `row`."""
        if self.rows and self.rows[-1] == row:  # the same step measured again
            self.rows.pop()
        slot = len(self.rows)
        if slot == self.data.shape[0]:
            grown = self.data.new_empty((min(self.capacity, 2 * slot + 1), *self.data.shape[1:]))
            grown[:slot] = self.data
            self.data = grown
        self.data[slot].copy_(counts)
        self.rows.append(row)

    def drop(self, row: int) -> None:
        """Forget the counts of StepBuffer row `row`, if they are the last ones stored."""
        if self.rows and self.rows[-1] == row:
            self.rows.pop()

    def slots(self, k: int) -> int:
        """How many stored slots belong to the first k rows (the rows of a flush)."""
        return sum(1 for r in self.rows if r < k)

    def drain(self, k: int, order: list[int]) -> np.ndarray | None:
        """The block for the k rows committed since the last drain (one transfer).

        Args:
            k: rows committed.
            order: the Record's layer order, as layer indices.

        Returns:
            array of shape (k, len(order), N_BINS), NaN on steps without a histogram;
            None when none of the k steps has one.
        """
        rows = [r for r in self.rows if r < k]
        self.rows = []
        if not rows:
            return None
        host = self.data[: len(rows)].to("cpu", copy=True).numpy()
        out = np.full((k, len(order), N_BINS), math.nan)
        out[rows] = host[:, order]
        return out

    def __repr__(self) -> str:
        return (
            f"HistogramRing({self.name!r}, {len(self.rows)} of {self.data.shape[0]} slots "
            f"used, {self.n_layers} layers x {N_BINS} bins on {self.device})"
        )


class GradHistograms:
    """Reads the layers' gradients into per-layer histograms on the scheduled steps.

    Args:
        layers: the probe's layers (index = state row).
        histograms: watch()'s option (see histogram_schedule).
        capacity: the StepBuffer's rows (flush_every).
        device: the model's device.
    """

    def __init__(self, layers: list[Layer], histograms: Any, capacity: int, device) -> None:
        self.schedule = histogram_schedule(histograms)
        self._owned = [
            (p, layer.index)
            for layer in layers
            for p in {id(p): p for p in layer.weights + layer.biases}.values()
        ]
        self._n_layers = len(layers)
        self.ring = HistogramRing(NAME, capacity, len(layers), device)
        self._plans: dict[tuple[bool, ...], HistogramPlan] = {}
        self._read = False  # read at this step's pre-step hook already
        self._local = False  # under torch.distributed: local shards, a slot every step

    def distribute(self, contributes: Callable[[torch.Tensor], bool]) -> None:
        """Under torch.distributed: count only what this rank adds to the ranks' sum.

        Args:
            contributes: whether this rank adds a parameter (distributed.contributes).
        """
        self._owned = [(p, layer) for p, layer in self._owned if contributes(p)]
        self._local = True
        self._plans.clear()

    @property
    def rings(self) -> tuple[HistogramRing, ...]:
        """The rings the Flusher drains: none while histograms are off."""
        return () if self.schedule is None else (self.ring,)

    def read(self, row: int, n_recorded: int) -> None:
        """At the optimizer's pre-step hook: histogram the gradients if the step is due."""
        if self.schedule is None:
            return
        self._read = True
        if not self.schedule(n_recorded):
            return
        all_grads = [p.grad for p, _ in self._owned]
        present = tuple(g is not None for g in all_grads)
        owned = [
            (local(g.detach()), layer)
            for g, (_, layer) in zip(all_grads, self._owned)
            if g is not None
        ]
        if owned:
            grads = [g for g, _ in owned]
            plan = self._plans.get(present)
            if plan is None:
                plan = self._plans[present] = HistogramPlan(
                    grads, [layer for _, layer in owned], self._n_layers
                )
            self.ring.put(row, plan.counts(grads))
        elif self._local:  # this rank adds nothing; its slot keeps the ranks' rows aligned
            self.ring.put(row, self._nothing())

    def _nothing(self) -> torch.Tensor:
        """NaN counts (n_layers, N_BINS): the reduction's mark of a rank that added none."""
        return self.ring.data.new_full((self._n_layers, N_BINS), math.nan)

    def discard(self, row: int) -> None:
        """Forget a step that is not kept (Probe.discard_step): its counts if read."""
        if self._read:
            self.ring.drop(row)
        self._read = False

    def end_step(self, row: int, n_recorded: int) -> None:
        """At the end of a recorded step: read now if the pre-step hook did not (no
        optimizer, or one that computes the gradients in step(closure))."""
        if not self._read:
            self.read(row, n_recorded)
        self._read = False

    def __repr__(self) -> str:
        return f"GradHistograms(schedule={self.schedule!r}, {self.ring!r})"
