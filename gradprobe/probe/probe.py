"""`Probe`: hooks on a model (and optimizer) recording per-layer gradient flow per step."""

from __future__ import annotations

import atexit
import math
import sys
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch import nn

from gradprobe.probe.activations import activation_kind
from gradprobe.probe.amp import LossScale
from gradprobe.probe.buffer import StepBuffer
from gradprobe.probe.capture import ForwardCapture
from gradprobe.probe.deltas import DeltaAccumulator
from gradprobe.probe.distributed import DistReducer, check_timeout, contributes, resolve
from gradprobe.probe.flush import Flusher, Sink
from gradprobe.probe.histograms import GradHistograms
from gradprobe.probe.hooks import SwitchableHooks
from gradprobe.probe.layers import Layer, describe, discover, first_tensor
from gradprobe.probe.schedule import Schedule, as_schedule
from gradprobe.probe.series_buffer import SeriesBuffer
from gradprobe.probe.step_stats import StepStats
from gradprobe.probe.through_time import NAME as THROUGH_TIME
from gradprobe.probe.through_time import ThroughTime
from gradprobe.stats import Workspace
from gradprobe.stats.derivation import STEP_SLOT

DELTA_MODES = ("auto", "hook")

# Weight change keeps one copy of the weights; by default only while that copy is at most
# this size (DESIGN.md: "on by default only while it is cheap"). 256 MiB is a small share
# of any training machine's memory; the copy is refreshed on detail steps only.
WEIGHT_CHANGE_AUTO_BYTES = 256 * 2**20


def _check_model(model: Any) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"watch() needs a torch.nn.Module as model; got {type(model).__name__} ({model!r:.60})"
        )
    if next(model.parameters(), None) is None:
        raise ValueError(
            f"model {type(model).__name__} has no parameters, so there is no gradient to "
            "watch; pass the module that owns the trainable layers"
        )


def _check_optimizer(optimizer: Any, model: nn.Module) -> None:
    if optimizer is None:
        return
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"optimizer must be a torch.optim.Optimizer or None; got {type(optimizer).__name__}"
        )
    mine = {id(p) for p in model.parameters()}
    if not any(id(p) in mine for g in optimizer.param_groups for p in g["params"]):
        raise ValueError("optimizer holds none of the model's parameters: is it another model's?")


def _check_options(delta: str, flush_every: Any, flush_secs: Any) -> None:
    if delta not in DELTA_MODES:
        raise ValueError(f"delta={delta!r} is not one of: {', '.join(DELTA_MODES)}")
    if isinstance(flush_every, bool) or not isinstance(flush_every, int) or flush_every < 1:
        raise ValueError(f"flush_every={flush_every!r} must be a positive int")
    number = isinstance(flush_secs, (int, float)) and not isinstance(flush_secs, bool)
    if not number or not math.isfinite(flush_secs) or flush_secs <= 0:
        raise ValueError(f"flush_secs={flush_secs!r} must be a positive number of seconds")


def status_of(exc: BaseException | None) -> tuple[str, str | None]:
    """(status, error) of a run ending with `exc` propagating (None: a normal end)."""
    if exc is None or (isinstance(exc, SystemExit) and exc.code in (0, None)):
        return "done", None
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", "KeyboardInterrupt"
    return "failed", f"{type(exc).__name__}: {exc}"


class Probe:
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
        detail_every: int | str | Schedule = 10,
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
        _check_model(model)
        _check_optimizer(optimizer, model)
        _check_options(delta, flush_every, flush_secs)
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

    # -- hooks -----------------------------------------------------------------------
    def _attach(self) -> None:
        self._handles.append(self.model.register_forward_pre_hook(self._on_model_start))
        for layer in self._layers:
            hook = partial(self._on_layer_forward, layer)
            self._layer_hooks.add(layer.module.register_forward_hook(hook))
        if self._activations:
            for module in self.model.modules():
                is_act, kind = activation_kind(module)
                if is_act and next(module.parameters(recurse=False), None) is None:
                    hook = partial(self._on_activation, kind, type(module).__name__)
                    self._layer_hooks.add(module.register_forward_hook(hook))
        self._layer_hooks.extend(self._through_time.attach())
        # registered last: runs after the root's own layer hook, at the end of forward
        self._handles.append(self.model.register_forward_hook(self._on_model_forward))
        if self.optimizer is not None:
            self._handles.append(self.optimizer.register_step_pre_hook(self._on_pre_step))
            self._handles.append(self.optimizer.register_step_post_hook(self._on_post_step))

    def _detach(self) -> None:
        self._layer_hooks.remove()
        while self._handles:
            self._handles.pop().remove()
        self._deltas.active = False
        self._through_time.active = False

    def _live(self) -> bool:
        return self._recording and not self._closed and torch.is_grad_enabled()

    def _measuring_time(self) -> bool:
        """Whether this forward pass measures the gradient through time (detail steps)."""
        return self._detail and self._live()

    def _begin_forward(self) -> None:
        """The first forward of a step (root or, when the root is not called, a layer)."""
        self._forward_since_step = True
        self._dropping = False
        if self._amp is not None and self._recording:  # the scale this step's backward uses
            self._amp.capture()
        if self._flusher.due():  # flush what is due before this step writes anything
            self.flush()

    def _on_model_start(self, module, args) -> None:
        if self._closed or not torch.is_grad_enabled():
            return
        if self._amp is not None and self._amp.skipped():
            self.discard_step()  # the GradScaler skipped the step these passes belong to
        if not self._forward_since_step:
            self._begin_forward()

    def _on_layer_forward(self, layer: Layer, module, args, output) -> None:
        if self._closed or not torch.is_grad_enabled():
            return
        if not self._forward_since_step:
            self._begin_forward()
        if not self._recording:
            return
        out = first_tensor(output)
        if out is None:
            return
        self._ran.add(layer.index)
        if layer.index not in self._seen:
            self._seen.add(layer.index)
            self._order.append(layer.index)
        if self._activations:
            self._capture.add(layer, out)
        if self._hooks_delta[layer.index]:
            self._deltas.attach(layer, out)

    def _on_activation(self, kind: str | None, name: str, module, args, output) -> None:
        if self._recording and args and not self._closed and torch.is_grad_enabled():
            self._capture.attribute(args[0], output, kind, name)

    def _on_model_forward(self, module, args, output) -> None:
        if self._live() and self._capture.has_pending:
            self._collect(self._buffer.current()[0])

    @torch.no_grad()
    def _collect(self, state: torch.Tensor) -> None:
        self._capture.collect(state, self._detail)

    @torch.no_grad()
    def _on_pre_step(self, optimizer, args, kwargs) -> None:
        if self._closed:
            return
        if self._detail:
            self._stats.snapshot()
        # a closure (LBFGS) computes the gradients inside step(): read them after it.
        # args are those of optimizer.step, the optimizer itself first (torch's wrapper)
        closure = kwargs.get("closure", args[1] if len(args) > 1 else None)
        if self._recording and closure is None:
            self._measured = self._stats.measure(self._detail)
            self._hist.read(len(self._buffer.steps), self._n_recorded)

    def _on_post_step(self, optimizer, args, kwargs) -> None:
        if not self._closed:
            self._end_step()

    # -- steps -----------------------------------------------------------------------
    def step(self) -> None:
        """End the current step, in a loop without an optimizer given to watch()."""
        if self.optimizer is not None:
            raise RuntimeError(
                "probe.step() is for loops without an optimizer: this probe ends each step "
                "at optimizer.step() already (watch(..., optimizer=opt))"
            )
        self._require_open()
        self._end_step()
        if self._detail:
            self._stats.snapshot()

    def _plan_step(self) -> None:
        """Decide what the step now starting records.

        `every` reads the step number; `detail_every` counts recorded steps, so that
        every=10, detail_every=10 measures in detail every 100th step, not every
        recorded one.
        """
        self._recording = bool(self._schedule(self._step))
        self._detail = self._recording and bool(self._detail_schedule(self._n_recorded))

    @torch.no_grad()
    def _end_step(self) -> None:
        # Count the step first: the optimizer has already taken it. A Ctrl-C landing in
        # this method then loses at most this step's statistics, never the count.
        step, self._step = self._step, self._step + 1
        if self._amp is not None:
            self._amp.step_taken()
        if self._recording:
            state, step_state = self._buffer.current()
            if self._capture.has_pending:
                self._collect(state)
            measured, self._measured = self._measured, None
            self._stats.grads(state, step_state, self._detail, measured)
            # hooked gradients are those of the scaled loss: 1 / loss scale undoes it
            unscale = None if self._amp is None else self._amp.inverse(state.device)
            hooked, feature_max = self._deltas.take(), self._capture.take_feature_max()
            if self._dist is not None:  # width-sized vectors wait for the flush's reduction
                row = len(self._buffer.steps)
                hooked, feature_max = self._dist.keep(row, state, hooked, feature_max, unscale)
            self._stats.deltas(state, hooked, self._delta_mode, self._ran, unscale)
            self._stats.dead(state, feature_max)
            if self._detail:
                self._stats.weights_and_update(state)
                self._series.put(len(self._buffer.steps), self._through_time.take(unscale))
            self._hist.end_step(len(self._buffer.steps), self._n_recorded)
            self._buffer.commit(step)
            self._n_recorded += 1
        else:
            self._deltas.take()
            self._capture.discard()
        self._through_time.discard()
        self._forward_since_step = False
        self._ran = set()
        self._plan_step()
        self._layer_hooks.switch(self._recording)

    def discard_step(self) -> None:
        """Drop what was recorded since the last step ended: a step the optimizer did not take.

        For a step a GradScaler skipped on overflow (watch(scaler=...) and the framework
        callbacks do it by themselves): the forward statistics, output gradients
        (delta_norm, delta_norm_t) and losses logged since the last step ended are
        forgotten, so they do not count as micro-batches of the next step. Call it after
        the skipped step's backward; a log_loss() before the next forward is dropped too.
        The step count does not change. No host synchronisation.
        """
        self._require_open()
        self._deltas.take()
        self._capture.discard()
        self._through_time.discard()
        self._hist.discard(len(self._buffer.steps))
        self._measured = None
        self._buffer.discard()
        self._forward_since_step = False
        self._ran = set()
        self._dropping = True
        if self._amp is not None:
            self._amp.sync()

    def log_loss(self, loss: torch.Tensor | float) -> None:
        """Record the loss of the current step (or of the step just ended by opt.step()).

        Call it before or after optimizer.step(); with gradient accumulation, once per
        micro-batch (the step's loss is their mean). No host synchronisation.
        """
        self._require_open()
        if isinstance(loss, torch.Tensor):
            if loss.numel() != 1:
                raise ValueError(f"log_loss() needs a scalar loss; got shape {tuple(loss.shape)}")
            value: torch.Tensor | float = loss.detach().reshape(()).to(torch.float64)
        elif isinstance(loss, (int, float)):
            value = float(loss)
        else:
            raise TypeError(f"log_loss() needs a tensor or a number; got {type(loss).__name__}")
        if self._dropping:
            return  # the loss of a discarded step
        if self._forward_since_step or self._step == 0:
            if not self._recording:
                return
            step_state = self._buffer.current()[1]
        else:
            last = self._buffer.last()
            if last is None or last[0] != self._step - 1:
                return  # the step just ended was not recorded
            step_state = last[1]
        step_state[STEP_SLOT["loss_sum"]] += value
        step_state[STEP_SLOT["loss_count"]] += 1.0

    # -- flushing --------------------------------------------------------------------
    def layer_info(self) -> list[dict]:
        """One dict per layer, in forward order (layers never run come last)."""
        names = self._capture.activation_names
        hooked = self._delta_mode == "hook"
        info = []
        for i in self._column_order():
            entry = describe(self._layers[i], names.get(i), hooked)
            through_time = self._through_time.describe(self._layers[i])
            if through_time is not None:
                entry[THROUGH_TIME] = through_time
            info.append(entry)
        return info

    def _column_order(self) -> list[int]:
        return self._order + [i for i in range(len(self._layers)) if i not in self._seen]

    def flush(self) -> None:
        """Copy the recorded steps to the host and hand them to the sink (run dir / memory)."""
        self._flusher.flush()

    def _layer_order(self) -> tuple[list[int], list[dict]]:
        return self._column_order(), self.layer_info()

    @property
    def first_nonfinite(self) -> dict | None:
        """{"step", "layer", "where"} of the first NaN/Inf flushed so far, or None."""
        return self._flusher.first_nonfinite

    # -- lifetime --------------------------------------------------------------------
    def _require_open(self) -> None:
        if self._closed:
            raise RuntimeError("this probe is closed; start a new one with gradprobe.watch()")

    def close(self, status: str | None = None, error: str | None = None) -> None:
        """Remove every hook, flush, and mark the run done (or failed / interrupted).

        Called from a `finally` block while an exception propagates, the status follows
        that exception: interrupted for KeyboardInterrupt, failed otherwise.
        """
        if self._closed:
            return
        self._detach()
        self._closed = True
        atexit.unregister(self._at_exit)
        if status is None:
            status, error = status_of(sys.exc_info()[1])
        if self._dist is not None and self._dist.error is not None:
            status, error = "failed", f"DistributedError: {self._dist.error}"
        try:
            self.flush()
        except BaseException as exc:  # a flush that fails (a rank lost) fails the run
            status, error = status_of(exc)
            raise
        finally:
            self._flusher.sink.finish(status, error)

    def annotate(self, **fields: Any) -> None:
        """Add JSON-serialisable fields to the run's metadata (run.json; Record.meta).

        For what the probe cannot see itself, e.g. a trainer's per-epoch evaluation.
        """
        self._require_open()
        self._flusher.sink.set_meta(**fields)

    def _at_exit(self) -> None:
        self.close("interrupted", "the process exited before probe.close()")

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(*status_of(exc))

    def record(self):
        """A Record of every step so far (flushes first)."""
        if not self._closed:
            self.flush()
        return self._flusher.sink.record()

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
