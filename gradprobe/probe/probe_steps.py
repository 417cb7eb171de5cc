"""The steps of a `Probe`: which steps record, ending one, dropping one, and its loss.

A step ends at the optimizer's post-step hook (or at probe.step() in a loop without an
optimizer). Its statistics are written into the step's row of the ring on the device,
then the next step is planned: `every` decides whether it records, `detail_every` whether
it measures the detail tier.
"""

from __future__ import annotations

import torch

from gradprobe.stats.derivation import STEP_SLOT


class ProbeSteps:
    """Part of `Probe`: the step count, the schedule, and what each step writes.

    Works on the state Probe.__init__ sets up (buffer, stats, capture, deltas, schedules).
    """

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
