"""Loss scaling (torch.amp.GradScaler): the scale of hooked gradients, and skipped steps.

With a GradScaler the backward runs on `scale * loss`. The parameter gradients the probe
reads at the optimizer's pre-step hook are unscaled by then (scaler.step() unscales them
first), but the output gradients that tensor hooks receive during the backward (hooked
delta_norm, delta_norm_t) are `scale` times the true ones. watch(scaler=...) divides them
by the scale of the step's backward, on the device.

The scale. GradScaler keeps it in a device tensor (`_scale`, made from `_init_scale` at
the first scale() call) that only update() changes, in place, and update() comes after
step() in every iteration. The probe copies the tensor on the device (no host read) at
the first forward of each step, before any backward of that step: every micro-batch of a
step is scaled by it.

Skipped steps. GradScaler.step() reads found_inf on the host itself (its own one
synchronisation per step) and calls optimizer.step() only when every gradient is finite,
so a skipped step is visible on the host without any read by the probe: update() ran (it
replaces the scaler's `_per_optimizer_states` dict at every call) and the watched
optimizer's step hooks did not run since the previous update(). The probe looks at the
start of each forward pass of the watched model; the step is then dropped
(Probe.discard_step): forward statistics, deltas, delta_norm_t and losses logged since
the last step taken, so the next step taken records what a loop that never ran the skipped
iteration records. Step numbers count the steps the optimizer took, as without a scaler.

Not covered: an optimizer that unscales inside its own step (`fused=True`; torch marks it
`_step_supports_amp_scaling`) is stepped by GradScaler even on overflow, with the found_inf
flag on the device: that step is recorded like any other (its non-finite gradient counts
show it). The framework callbacks turn that path off (integrations.common
.unscale_before_step); with gp.watch use a non-fused optimizer, or call
scaler.unscale_(opt) before scaler.step(opt) so the gradients are read unscaled.
"""

from __future__ import annotations

from typing import Any

import torch


class LossScale:
    """What a GradScaler tells the probe, read with no host synchronisation.

    Args:
        scaler: an enabled torch.amp.GradScaler (or a subclass: ShardedGradScaler).
        watches_steps: the probe hooks an optimizer's step, so a step the scaler skips
            can be told from one taken (without one, probe.step() ends every step).
    """

    def __init__(self, scaler: torch.amp.GradScaler, watches_steps: bool) -> None:
        self.scaler = scaler
        self._watches_steps = watches_steps
        self._states = scaler._per_optimizer_states  # the dict update() replaces
        self._stepped = False  # the optimizer took a step since update() last ran
        self._scale: torch.Tensor | float = float(scaler._init_scale)

    @classmethod
    def of(cls, scaler: Any, optimizer: torch.optim.Optimizer | None) -> LossScale | None:
        """A LossScale for watch(scaler=...): None for None or a disabled scaler.

        Raises:
            TypeError: `scaler` is not a torch.amp.GradScaler.
        """
        if scaler is None:
            return None
        if not isinstance(scaler, torch.amp.GradScaler):
            raise TypeError(
                f"scaler must be a torch.amp.GradScaler (or a subclass) or None; got "
                f"{type(scaler).__name__} ({scaler!r:.60})"
            )
        if not scaler.is_enabled():
            return None  # no scaling, no skipped steps
        return cls(scaler, optimizer is not None)

    def capture(self) -> None:
        """At the first forward of a step: keep the scale its backward will use."""
        scale = self.scaler._scale
        self._scale = float(self.scaler._init_scale) if scale is None else scale.detach().clone()

    def inverse(self, device: torch.device) -> torch.Tensor | float:
        """1 / scale of this step, float64 on `device` (a float before the first scale())."""
        if isinstance(self._scale, float):
            return 1.0 / self._scale
        return 1.0 / self._scale.to(device, torch.float64)

    def step_taken(self) -> None:
        """The watched optimizer's step ran (the probe's post-step hook)."""
        self._stepped = True

    def skipped(self) -> bool:
        """Whether update() ran since the last look, after a step the scaler skipped.

        Called at the start of each forward pass; False without an optimizer watched.
        """
        states = self.scaler._per_optimizer_states
        if states is self._states:
            return False
        self._states = states
        taken, self._stepped = self._stepped, False
        return self._watches_steps and not taken

    def sync(self) -> None:
        """After a discard: whatever update() ran so far belongs to the dropped step."""
        self._states = self.scaler._per_optimizer_states
        self._stepped = False

    def __repr__(self) -> str:
        return (
            f"LossScale({type(self.scaler).__name__}, skip detection "
            f"{'on' if self._watches_steps else 'off (no optimizer watched)'})"
        )
