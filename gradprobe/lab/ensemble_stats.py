"""The probe of an ensemble: each member's record, as `gradprobe.watch` gives it alone.

The statistics are those of gradprobe.probe (step_stats.py, capture.py), on the same
schedule: every recorded step takes sums of squares of gradients and activations (delta
from the bias gradient); detail steps add non-finite counts, |g| sum and max,
saturation, dead units, ||W|| and the update W_t - W_{t-1}. They are computed batched,
one row per member of (M, ...) tensors, with gradprobe.stats, kept on the device in one
buffer of shape (flush_every, M * L * N_SLOTS + M * 4) and copied to the host once per
flush (nothing is read between flushes); each member's quantities go to its own sink.
The detail-step statistics themselves are gradprobe.lab.ensemble_detail.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from gradprobe.lab.ensemble_detail import _by_layer as _by_layer
from gradprobe.lab.ensemble_detail import _rows, act_detail, grad_detail, weight_detail
from gradprobe.probe.schedule import DETAIL_EVERY, Schedule, as_schedule
from gradprobe.stats import SLOT, Workspace, derive, derive_steps
from gradprobe.stats.derivation import STEP_SLOT, STEP_SLOTS
from gradprobe.stats.nonfinite import describe_first_nonfinite, first_nonfinite
from gradprobe.stats.slots import init_row

# Evidence that a member's chunk may hold a non-finite value (stats/nonfinite.py): only
# members showing one of these are searched for the first one.
_NORMS = ("grad_norm", "bias_grad_norm", "delta_norm")
_COUNTS = ("act_nonfinite", "grad_nonfinite")


class EnsembleProbe:
    """Records every member of an EnsembleMLP, one sink (and Record) per member.

    Args:
        weights: the stacked weights, one tensor of shape (M, out, in) per layer.
        biases: the stacked biases, one tensor of shape (M, out) per layer.
        kinds: per layer, the activation kind the solo probe gives it ("sigmoid",
            "tanh", "relu" or None; gradprobe.probe.activations).
        layer_info: per layer, the dict gp.watch(solo).layer_info() gives.
        sinks: one per member: gradprobe.record.sink.MemorySink or RunDirSink.
        every, detail_every, flush_every, flush_secs: as in gradprobe.watch.
        weight_change: record the update quantities (one copy of the weights).
    """

    def __init__(
        self,
        weights: Sequence[torch.Tensor],
        biases: Sequence[torch.Tensor],
        kinds: Sequence[str | None],
        layer_info: list[dict],
        sinks: Sequence,
        *,
        every: int | str | Schedule = 1,
        detail_every: int | str | Schedule = DETAIL_EVERY,
        flush_every: int = 100,
        flush_secs: float = 10.0,
        weight_change: bool = True,
    ) -> None:
        self._weights, self._biases, self._kinds = list(weights), list(biases), list(kinds)
        self.members, self.n_layers = weights[0].shape[0], len(self._weights)
        if len(sinks) != self.members:
            raise ValueError(f"{len(sinks)} sinks given for {self.members} members; need one each")
        self._sinks, self._layer_info = list(sinks), layer_info
        self._schedule = as_schedule(every)
        self._detail_schedule = as_schedule(detail_every, name="detail_every")
        self._capacity, self._flush_secs = flush_every, flush_secs
        self._last_flush = time.monotonic()
        self.device = weights[0].device
        self.weight_change = weight_change
        self._ws = Workspace()
        self._prev: list[torch.Tensor] | None = None
        self._prev_valid = False
        self._index: dict[tuple[str, ...], torch.Tensor] = {}
        self._sizes: dict[tuple[int, ...], torch.Tensor] = {}
        self._template = self._make_template()  # (M, L, N_SLOTS)
        m, width = self.members, self._template.numel()
        # one block per step, the layer states then the step states: a flush is one copy
        self._rows = self._template.new_zeros(flush_every, width + m * len(STEP_SLOTS))
        self._states = self._rows[:, :width].view(flush_every, *self._template.shape)
        self._step_states = self._rows[:, width:].view(flush_every, m, len(STEP_SLOTS))
        self._states.copy_(self._template.expand_as(self._states))
        self._numel = sum(p[0].numel() for p in self._weights + self._biases)
        w_numel = [float(w[0].numel()) for w in self._weights]
        self._w_numel = self._template.new_tensor(w_numel).expand(m, -1)  # (M, L)
        self._steps: list[int] = []
        self._n_recorded = 0  # recorded steps so far: what detail_every counts
        self.step = 0
        self.first_nonfinite: list[dict | None] = [None] * m
        self._layers_written = self._closed = False
        self.recording, self.detail = self._plan(0)
        for i, sink in enumerate(self._sinks):  # what gp.watch records, and the member
            sink.set_meta(device=str(self.device), layers=[d["name"] for d in layer_info],
                          torch_seed=torch.initial_seed(), member=i, members=m)  # fmt: skip

    def _make_template(self) -> torch.Tensor:
        """A fresh step state: identities, plus what every recorded step counts alike."""
        state = init_row(self.device).repeat(self.members, self.n_layers, 1)
        for layer, (w, b) in enumerate(zip(self._weights, self._biases)):
            state[:, layer, SLOT["g_w_numel"]] = w[0].numel()
            state[:, layer, SLOT["g_b_numel"]] = b[0].numel()
            state[:, layer, SLOT["delta_n"]] = 1.0  # delta read from the bias gradient
        return state

    def _plan(self, step: int) -> tuple[bool, bool]:
        # as Probe._plan_step: detail_every counts recorded steps
        recording = bool(self._schedule(step))
        return recording, recording and bool(self._detail_schedule(self._n_recorded))

    # -- steps -----------------------------------------------------------------------
    def before_update(self) -> None:
        """Call between backward and optimizer.step(): keeps W_{t-1} on detail steps."""
        if not (self.detail and self.weight_change):
            return
        now = [w.detach() for w in self._weights]
        if self._prev is None:
            self._prev = [w.clone() for w in now]
        else:
            torch._foreach_copy_(self._prev, now)
        self._prev_valid = True

    @torch.no_grad()
    def end_step(self, acts: list[torch.Tensor], loss: torch.Tensor) -> None:
        """Record the step just taken (after optimizer.step()).

        Args:
            acts: per layer, the activations of shape (M, B, units) the solo probe reads:
                phi(z) where an activation module follows the layer, else z.
            loss: each member's batch-mean loss, shape (M,).
        """
        self.step += 1
        if self.recording:
            i = len(self._steps)
            g_total = self._measure(self._states[i], acts)  # (M,)
            ones = torch.ones_like(g_total)
            columns = {
                "loss_sum": loss.double(),
                "loss_count": ones,
                "global_sumsq": g_total,
                "global_numel": ones * self._numel,
            }
            self._step_states[i].copy_(torch.stack([columns[n] for n in STEP_SLOTS], 1))
            self._steps.append(self.step - 1)
            self._n_recorded += 1
        self.recording, self.detail = self._plan(self.step)
        if self._steps and (len(self._steps) >= self._capacity or self._flush_secs_passed()):
            self.flush()

    def _measure(self, state: torch.Tensor, acts: list[torch.Tensor]) -> torch.Tensor:
        """Fill one step's state (M, L, N_SLOTS); return each member's global sum g^2."""
        w, b, ws = self._weights, self._biases, self._ws
        if not self.detail:
            return self._cheap(state, acts)
        grads = grad_detail(w, b, ws)
        self._write(state, {**grads, **act_detail(acts, self._kinds, ws)})
        prev, self._prev_valid = (self._prev if self._prev_valid else None), False
        self._write(state, weight_detail(w, prev, self._w_numel))
        return grads["g_w_sumsq"].sum(1) + grads["g_b_sumsq"].sum(1)

    def _cheap(self, state: torch.Tensor, acts: list[torch.Tensor]) -> torch.Tensor:
        """Every recorded step: the cheap tier of StepStats._write_cheap (gradient sums of
        squares) and ForwardCapture._write_cheap (activation count, sum, sum of squares),
        in a fixed handful of ops for all members; non-finite elements are counted on
        detail steps, as the probe does (a NaN or Inf shows in the sums meanwhile).

        Returns:
            each member's sum of squares of all its gradients, float64 (M,).
        """
        n = self.n_layers
        rows = [_rows(p.grad) for p in self._weights + self._biases] + [_rows(a) for a in acts]
        norms = torch.stack([torch.linalg.vector_norm(r, dim=1) for r in rows], 1)
        sums = torch.stack([r.sum(1) for r in rows[2 * n :]], 1)
        table = torch.cat([norms, sums], 1).double()  # (M, 3n + n)
        sq = table[:, : 3 * n].square()
        sizes = tuple(r.shape[1] for r in rows[2 * n :])
        if sizes not in self._sizes:
            self._sizes[sizes] = table.new_tensor(sizes)
        b_sq = sq[:, n : 2 * n]
        values = {
            "g_w_sumsq": sq[:, :n], "g_b_sumsq": b_sq, "delta_sumsq": b_sq,
            "a_count": self._sizes[sizes].expand(self.members, -1),
            "a_sum": table[:, 3 * n :], "a_sumsq": sq[:, 2 * n :],
        }  # fmt: skip
        self._write(state, values)
        return sq[:, : 2 * n].sum(1)

    def _write(self, state: torch.Tensor, values: dict[str, torch.Tensor]) -> None:
        """Copy (M, L) values into their slots of state (M, L, N_SLOTS): one indexed op."""
        names = tuple(values)
        if names not in self._index:
            self._index[names] = torch.tensor([SLOT[n] for n in names], device=self.device)
        state.index_copy_(2, self._index[names], torch.stack(list(values.values()), 2))

    def _flush_secs_passed(self) -> bool:
        return time.monotonic() - self._last_flush >= self._flush_secs

    # -- flushing --------------------------------------------------------------------
    def flush(self) -> None:
        """Copy the recorded steps to the host (one copy) and hand each member its own."""
        self._last_flush = time.monotonic()
        k = len(self._steps)
        if not k:
            return
        if not self._layers_written:
            for sink in self._sinks:
                sink.write_layers(self._layer_info)
            self._layers_written = True
        steps = np.asarray(self._steps, dtype=np.int64)
        rows = self._rows[:k].to("cpu", copy=True).numpy()  # the one host copy
        width = self._template.numel()
        states = rows[:, :width].reshape(k, *self._template.shape)  # (k, M, L, N_SLOTS)
        step_states = rows[:, width:].reshape(k, self.members, -1)  # (k, M, 4)
        self._steps = []
        self._states[:k].copy_(self._template.expand(k, -1, -1, -1))  # reset once a flush
        values = derive(states)  # quantity -> (k, M, L)
        step_values = derive_steps(step_states.reshape(k * self.members, -1))
        step_values = {q: v.reshape(k, self.members) for q, v in step_values.items()}
        for m, sink in enumerate(self._sinks):
            mine = {q: v[:, m] for q, v in values.items()}
            sink.append(steps, mine, {q: v[:, m] for q, v in step_values.items()})
        self._note_nonfinite(steps, values, step_values, step_states)

    def _note_nonfinite(self, steps, values, step_values, step_states) -> None:
        logged = step_states[..., STEP_SLOT["loss_count"]] > 0  # (k, M)
        loss_bad = logged & ~np.isfinite(step_states[..., STEP_SLOT["loss_sum"]])
        suspect = loss_bad.any(0)
        for q in _NORMS:
            suspect |= (~np.isfinite(values[q])).any((0, 2))
        for q in _COUNTS:
            suspect |= (values[q] > 0).any((0, 2))
        names = [d["name"] for d in self._layer_info]
        for m in np.flatnonzero(suspect):
            if self.first_nonfinite[m] is not None:
                continue
            mine = {q: v[:, m] for q, v in values.items()}
            found = first_nonfinite(steps, names, mine, step_values["loss"][:, m], loss_bad[:, m])
            if found is not None:
                self.first_nonfinite[m] = found
                message = describe_first_nonfinite(found)
                warnings.warn(f"gradprobe: member {m}: {message}", RuntimeWarning, stacklevel=3)

    def close(self, status: str = "done", error: str | None = None) -> None:
        """Flush, and mark every member's run done (or failed / interrupted)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.flush()
        finally:
            for sink in self._sinks:
                sink.finish(status, error)

    def records(self) -> list:
        """Each member's Record, in member order (flushes first)."""
        if not self._closed:
            self.flush()
        return [sink.record() for sink in self._sinks]

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"step {self.step}"
        return (
            f"EnsembleProbe({self.members} members x {self.n_layers} layers, {state}, "
            f"every={self._schedule!r}, detail_every={self._detail_schedule!r})"
        )
