"""`Probe`: hooks on a model (and optimizer) recording per-layer gradient flow per step.

The class is assembled from one part per concern: probe_hooks (the hooks), probe_steps
(ending, discarding and logging steps), probe_lifecycle (flush, close, run status); this
module sets up the state they share and holds the introspection.
"""

from __future__ import annotations

import atexit
import math
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch import nn

from gradprobe.probe.amp import LossScale
from gradprobe.probe.buffer import StepBuffer
from gradprobe.probe.capture import ForwardCapture
from gradprobe.probe.deltas import DeltaAccumulator
from gradprobe.probe.distributed import DistReducer, check_timeout, contributes, resolve
from gradprobe.probe.flush import Flusher, Sink
from gradprobe.probe.histograms import GradHistograms
from gradprobe.probe.hooks import SwitchableHooks
from gradprobe.probe.layers import Layer, discover
from gradprobe.probe.probe_checks import DELTA_MODES, check_model, check_optimizer, check_options
from gradprobe.probe.probe_hooks import ProbeHooks
from gradprobe.probe.probe_lifecycle import ProbeLifecycle, status_of
from gradprobe.probe.probe_steps import ProbeSteps
from gradprobe.probe.schedule import DETAIL_EVERY, Schedule, as_schedule
from gradprobe.probe.series_buffer import SeriesBuffer
from gradprobe.probe.step_stats import StepStats
from gradprobe.probe.through_time import NAME as THROUGH_TIME
from gradprobe.probe.through_time import ThroughTime
from gradprobe.stats import Workspace

__all__ = ["DELTA_MODES", "WEIGHT_CHANGE_AUTO_BYTES", "Probe", "status_of"]

# Weight change keeps one copy of the weights; by default only while that copy is at most
# this size (DESIGN.md: "on by default only while it is cheap"). 256 MiB is a small share
# of any training machine's memory; the copy is refreshed on detail steps only.
WEIGHT_CHANGE_AUTO_BYTES = 256 * 2**20


class Probe(ProbeHooks, ProbeSteps, ProbeLifecycle):
    """Records per-layer gradient flow of a model, step by step. Use `gradprobe.watch`.

    A step ends at the optimizer's step (when an optimizer is given) or at probe.step().
    Statistics accumulate on the model's device and reach the host once per flush.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None,
        make_sink: Callable[[], Sink],
        *,
        every: int | str | Schedule = 1,
        detail_every: int | str | Schedule = DETAIL_EVERY,
        activations: bool = True,
        weight_change: bool | None = None,
        delta: str = "auto",
        flush_every: int = 100,
        flush_secs: float = 10.0,
        unknown: str = "hook",
        histograms: Any = None,
        distributed: bool | None = None,
        dist_timeout: float | None = None,
        scaler: Any = None,
    ) -> None:
        check_model(model)
        check_optimizer(optimizer, model)
        check_options(delta, flush_every, flush_secs)
        check_timeout(dist_timeout)
        self._amp = LossScale.of(scaler, optimizer)  # None: no loss scaling to undo
        self._schedule = as_schedule(every)
        self._detail_schedule = as_schedule(detail_every, name="detail_every")
        self.model = model
        self.optimizer = optimizer
        self._layers: list[Layer] = discover(model, unknown)
        if not self._layers:
            raise ValueError(f"no layer of {type(model).__name__} is watched (unknown={unknown!r})")
        self._device = next(model.parameters()).device
        self._ws = Workspace()
        self._capture = ForwardCapture(self._ws)
        self._deltas = DeltaAccumulator()
        self._activations = activations
        self._delta_mode = delta
        # per layer: delta is hooked on its output (decided once: a property per call
        # costs ~0.3 us a layer, 1% of a 256-layer MLP's step)
        self._hooks_delta = [delta == "hook" or not x.delta_from_bias for x in self._layers]
        self._stats = StepStats(self._layers, False, self._ws)
        if weight_change is None:
            weight_change = self._stats.snapshot_bytes <= WEIGHT_CHANGE_AUTO_BYTES
        self._stats.weight_change = bool(weight_change)
        self._buffer = StepBuffer(len(self._layers), flush_every, self._device)
        self._through_time = ThroughTime(self._layers, self._measuring_time)
        self._series = SeriesBuffer(
            THROUGH_TIME, flush_every, self._through_time.indices, self._device
        )
        self._hist = GradHistograms(self._layers, histograms, flush_every, self._device)
        self._dist: DistReducer | None = None  # under torch.distributed: reduces per flush
        if resolve(distributed):
            self._dist = DistReducer(
                self._buffer, (self._series,), dist_timeout, histograms=self._hist.rings
            )
            self._stats.distribute(partial(contributes, rank=self._dist.rank))
            self._hist.distribute(partial(contributes, rank=self._dist.rank))
            flush_secs = math.inf  # flushes are collective: they follow the step count
        self._order: list[int] = []
        self._seen: set[int] = set()
        self._ran: set[int] = set()  # layers whose forward ran in this step
        self._forward_since_step = False
        self._dropping = False  # a step was discarded: log_loss() belongs to it until a forward
        self._measured: tuple | None = None  # gradients reduced at the pre-step hook
        sink = make_sink()  # only now: a bad argument creates no run dir
        series = (self._series, *self._hist.rings)
        reduce = None if self._dist is None else self._dist.reduce
        self._flusher = Flusher(
            self._buffer, sink, flush_secs, self._layer_order, series=series, reduce=reduce
        )
        last = sink.last_step()
        self._step = 0 if last is None else last + 1
        if self._dist is not None:
            self._step = self._dist.start_step(last)  # rank 0's: only it reads the run dir
            sink.set_meta(distributed={"world_size": self._dist.world, "rank": self._dist.rank})
        self._n_recorded = 0  # recorded steps so far: what detail_every counts
        self._recording = self._detail = False
        self._plan_step()
        self._handles: list[Any] = []  # always on: the root module's and the optimizer's
        self._layer_hooks = SwitchableHooks()  # per module: off on steps not recorded
        self._closed = False
        try:
            self._attach()
        except BaseException:
            self._detach()
            raise
        self._layer_hooks.switch(self._recording)
        if self._detail and optimizer is None:
            self._stats.snapshot()
        sink.set_meta(
            device=str(self._device),
            layers=[layer.name for layer in self._layers],
            torch_seed=torch.initial_seed(),  # the seed torch's default generator started from
        )
        atexit.register(self._at_exit)

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(*status_of(exc))

    # -- introspection ---------------------------------------------------------------
    @property
    def layers(self) -> list[str]:
        """Watched layer names, in forward order once a forward pass has run."""
        return [self._layers[i].name for i in self._column_order()]

    @property
    def step_count(self) -> int:
        """Steps ended so far (recorded or not), counting from a resumed run's last step."""
        return self._step

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"step {self._step}"
        return (
            f"Probe({type(self.model).__name__}, {len(self._layers)} layers, {state}, "
            f"every={self._schedule!r}, detail_every={self._detail_schedule!r}, "
            f"weight_change={self._stats.weight_change})"
        )
