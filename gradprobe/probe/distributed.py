"""Statistics of the global batch and the whole model under torch.distributed.

Each rank records its own rings of states; at each flush they are all-reduced in place,
before the one host copy, so every rank holds the global figures. Only rank 0 writes the
run directory (gradprobe.attach); the other ranks keep the same Record in memory.

R ranks each hold a slice of the global batch, each rank's loss C_r a mean over its
slice; DDP and FSDP average the gradients over ranks: for slices of one size, the
gradient of C = (1/R) sum_r C_r, the mean loss of the global batch. Per quantity:

- grad_norm, bias_grad_norm, grad_abs_mean, grad_abs_max, grad_nonfinite, the global
  grad_norm, weight_norm, update_norm, update_ratio, weight_change_mean:
  * replicated parameter (DDP; a DTensor's Replicate mesh dims): every rank holds the
    same averaged gradient and weights, so one rank (rank 0, or coordinate 0 on the
    replicating mesh dims) adds its sums and the others add nothing. Summing them again
    would count ||g||^2 R times.
  * sharded parameter (FSDP2 fully_shard, DTensor Shard): each rank holds a shard;
    sums of squares, |g| sums and element counts add, max |g| takes the max (a NaN
    max may lose to a finite one in the backend's MAX: the non-finite counts add).
- delta_norm read from the bias gradient: as that bias gradient (averaged or sharded).
- delta_norm of hooked layers: rank r holds v_r = sum over its slice of dC_r/dz (F,).
  For example i of rank r's slice dC/dz_i = (1/R) dC_r/dz_i, so the global batch's
  v = (1/R) sum_r v_r, then ||v||^2. Norms of the v_r do not combine: the vectors are
  kept on the device (VectorRing) to the flush.
- act_mean, act_std, saturated_frac, act_nonfinite: counts, sums and sums of squares of
  each slice add; abs_min_nonzero takes the min.
- dead_frac: a unit is dead when it is active (> 0) on no example of the global batch:
  per-unit activity indicators (0/1) add, and dead units are those at 0.
- delta_norm_t (recurrent layers): n_r(t) = ||dC_r/dh_t|| over the slice, and
  ||dC/dh_t||^2 = (1/R^2) sum_r n_r(t)^2; NaN unless every rank measured it.
- loss: loss sums and counts add, the mean over ranks: the global batch's mean loss.
- grad_hist (histograms of |g|): each rank counts the local shards of the parameters it
  adds (as for the norms), and the counts add. A rank that adds nothing on a histogram
  step holds a NaN slot; a step is NaN only where every rank's slot is.

Collectives: watch() broadcasts rank 0's step count (a resumed run's) once. Each flush
makes one MAX all-reduce of fixed size (maxima, negated minima, and what every rank must
agree on: rows, state width, vector layout, histogram steps) and, once they agree, one
SUM all-reduce of all the rest (state ring, vector ring, series, histogram rings). None
between flushes; flushes follow the step count only (flush_secs could differ between
ranks). flush(), record() and close() are thus collective: every rank calls them.

Not covered: tensor- or sequence-parallel activations and deltas (not batch slices; a
DTensor with a Partial placement raises), pipeline parallelism (ranks hold different
layers: the agreement check fails; use distributed=False and a run per stage).
"""

from __future__ import annotations

import math
import zlib
from functools import partial
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

from gradprobe.probe.buffer import StepBuffer, VectorRing
from gradprobe.probe.distributed_group import (
    DistributedError,
    GroupMember,
    check_timeout,
    contributes,
    is_dtensor,
    is_writer,
    local,
    resolve,
)
from gradprobe.probe.series_buffer import SeriesBuffer
from gradprobe.stats.derivation import STEP_SLOTS
from gradprobe.stats.slots import REDUCTIONS, SLOT

if TYPE_CHECKING:  # annotations only
    from gradprobe.probe.histograms import HistogramRing

__all__ = [  # the group's names were defined here first: importable from here as before
    "DistReducer",
    "DistributedError",
    "GroupMember",
    "check_timeout",
    "contributes",
    "is_dtensor",
    "is_writer",
    "local",
    "resolve",
]


class DistReducer(GroupMember):
    """All-reduces a probe's rings over the default process group, once per flush.

    Args:
        buffer: the ring of step states.
        series: rings of per-step vectors aligned with it (delta_norm_t).
        timeout: seconds each collective may take; None: the process group's timeout.
        histograms: rings of per-layer histogram counts of some steps (grad_hist), summed.
    """

    def __init__(
        self,
        buffer: StepBuffer,
        series: tuple[SeriesBuffer, ...],
        timeout: float | None,
        histograms: tuple[HistogramRing, ...] = (),
    ) -> None:
        super().__init__(timeout, buffer.device)
        self.buffer, self.series = buffer, series
        self.histograms = histograms
        self.vectors = VectorRing(buffer.capacity, buffer.device)
        n_layers, device = buffer.states.shape[1], buffer.device
        reductions = list(REDUCTIONS) * n_layers + ["sum"] * len(STEP_SLOTS)
        self._sum = torch.tensor([r == "sum" for r in reductions], device=device)
        self._extremal = torch.tensor(
            [i for i, r in enumerate(reductions) if r != "sum"], device=device
        )
        self._sign = torch.tensor(  # max of -x is -min x: one MAX for both kinds
            [-1.0 if r == "min" else 1.0 for r in reductions if r != "sum"],
            dtype=torch.float64,
            device=device,
        )

    # -- per step --------------------------------------------------------------------
    def keep(
        self,
        row: int,
        state: torch.Tensor,
        hooked: dict[int, torch.Tensor],
        feature_max: dict[int, torch.Tensor],
        unscale: torch.Tensor | float | None = None,
    ) -> tuple[dict, dict]:
        """Keep a step's width-sized vectors in the ring to the flush; mark them in state.

        Args:
            row, state: the step's row in the StepBuffer and its state (L, N_SLOTS).
            hooked: layer index -> (F,) output gradient summed over this rank's slice.
            feature_max: layer index -> (F,) max over the slice of each ReLU unit.
            unscale: None, or 1 / the loss scale the hooked gradients carry.

        Returns:
            two empty dicts in their place: nothing is left to reduce per rank.
        """
        if hooked:
            layers = self.vectors.put(row, "delta", hooked, unscale)
            state[:, SLOT["delta_n"]].index_fill_(0, layers, 1.0)
        if feature_max:
            alive = {index: v > 0 for index, v in feature_max.items()}
            layers = self.vectors.put(row, "alive", alive)
            state[:, SLOT["a_units"]].index_fill_(0, layers, 1.0)
        return {}, {}

    # -- per flush -------------------------------------------------------------------
    def reduce(self) -> bool:
        """All-reduce the committed rows of every ring in place.

        Returns:
            False when an earlier collective failed: nothing was reduced, and the rows
            are to be dropped.

        Raises:
            DistributedError: a collective failed or timed out, or the ranks disagree.
        """
        k = len(self.buffer.steps)
        if self.error is not None or k == 0:
            self.vectors.data[:k].zero_()
            return self.error is None
        self._where = f"flushing steps {self.buffer.steps[0]}..{self.buffer.steps[-1]}"
        rows = self.buffer.rows[:k]
        self._reduce_extremal(k, rows)
        self._reduce_sums(k, rows)
        self.vectors.data[:k].zero_()
        return True

    def _agreement(self, k: int) -> dict[str, float]:
        """What every rank must hold the same of at a flush."""
        return {
            "ring capacity (flush_every)": self.buffer.rows.shape[0],
            "state width (layers)": self.buffer.rows.shape[1],
            "steps to flush": k,
            "vector layout": zlib.crc32(repr(self.vectors.segments).encode()),
            "histogram steps": zlib.crc32(repr([h.rows for h in self.histograms]).encode()),
        }

    def _reduce_extremal(self, k: int, rows: torch.Tensor) -> None:
        """One MAX over every row of the ring (fixed size): maxima, minima, agreement."""
        device = rows.device
        names = self._agreement(k)
        agree = torch.tensor(list(names.values()), dtype=torch.float64, device=device)
        widths = torch.tensor([s.width for s in self.series], dtype=torch.float64, device=device)
        extremal = self.buffer.rows[:, self._extremal] * self._sign
        packed = torch.cat([agree, -agree, widths, extremal.reshape(-1)])
        start = partial(dist.all_reduce, packed, dist.ReduceOp.MAX, async_op=True)
        self._collective(start, "all-reduce (max) of the statistics")
        n, head = agree.numel(), packed[: 2 * agree.numel() + widths.numel()].tolist()
        for name, hi, lo in zip(names, head[:n], head[n : 2 * n]):
            if hi != -lo:
                self._fail(f"the ranks disagree on the {name}: {-lo:g} on one, {hi:g} on another")
        for ring, width in zip(self.series, head[2 * n :]):
            _widen(ring, int(width))
        maxima = packed[len(head) :].view(-1, len(self._sign))[:k]
        rows[:, self._extremal] = maxima * self._sign

    def _reduce_sums(self, k: int, rows: torch.Tensor) -> None:
        """One SUM of the sum slots, the vector ring and the series; then finish them."""
        parts = [torch.where(self._sum, rows, 0.0).reshape(-1), self.vectors.data[:k].reshape(-1)]
        series = [ring for ring in self.series if ring.width > 0]
        for ring in series:
            sq = ring.data[:k].square()
            seen = ~sq.isnan()
            parts += [torch.where(seen, sq, 0.0).reshape(-1), seen.double().reshape(-1)]
        histograms = [(ring, ring.slots(k)) for ring in self.histograms]
        for ring, n in histograms:
            counts = ring.data[:n]
            held = ~counts[:, :1, :1].isnan()  # (n, 1, 1): a rank's slot is NaN or counts
            parts += [torch.where(held, counts, 0.0).reshape(-1), held.double().reshape(-1)]
        packed = torch.cat(parts)
        start = partial(dist.all_reduce, packed, dist.ReduceOp.SUM, async_op=True)
        self._collective(start, "all-reduce (sum) of the statistics")
        sizes = [p.numel() for p in parts]
        chunks = iter(packed.split(sizes))
        rows.copy_(torch.where(self._sum, next(chunks).view_as(rows), rows))
        self._finish_vectors(k, next(chunks).view(k, -1))
        for ring in series:
            sq, seen = next(chunks), next(chunks)
            norm = (sq.sqrt() / self.world).view_as(ring.data[:k])
            everywhere = (seen == self.world).view_as(norm)
            ring.data[:k] = torch.where(everywhere, norm, math.nan)
        for ring, n in histograms:
            counts, held = next(chunks), next(chunks)
            summed = counts.view_as(ring.data[:n])
            ring.data[:n] = torch.where(held.view(n, 1, 1) > 0, summed, math.nan)

    def _finish_vectors(self, k: int, vectors: torch.Tensor) -> None:
        """delta_sumsq of hooked layers and a_dead / a_units from the summed vectors."""
        states = self.buffer.states[:k]
        for kind in ("delta", "alive"):
            if not any(segment[0] == kind for segment in self.vectors.segments):
                continue
            columns, owner, layers, width = self.vectors.layout(kind)
            x = vectors[:, columns]
            values = (x / self.world).square() if kind == "delta" else (x == 0).double()
            per = x.new_zeros(k, len(layers)).index_add_(1, owner, values)
            if kind == "delta":
                states[:, layers, SLOT["delta_sumsq"]] = per
                continue
            measured = states[:, layers, SLOT["a_units"]] > 0
            states[:, layers, SLOT["a_dead"]] = torch.where(measured, per, 0.0)
            states[:, layers, SLOT["a_units"]] = torch.where(measured, width, 0.0)

    def __repr__(self) -> str:
        state = "failed" if self.error is not None else "ok"
        return (
            f"DistReducer(rank {self.rank} of {self.world}, timeout={self.timeout}, "
            f"{self.vectors!r}, {state})"
        )


def _widen(ring: SeriesBuffer, width: int) -> None:
    """NaN-pad a series ring to `width` columns, the widest of all ranks."""
    if width <= ring.width:
        return
    grown = ring.data.new_full((*ring.data.shape[:2], width), math.nan)
    grown[:, :, : ring.width] = ring.data
    ring.data = grown
