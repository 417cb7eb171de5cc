"""What the framework callbacks share: the real optimizer, checked watch options, attaching.

Frameworks wrap the torch optimizer (Lightning's `LightningOptimizer`, accelerate's
`AcceleratedOptimizer`). Those wrappers do not run torch's optimizer step hooks themselves:
their step() calls the wrapped optimizer's step(), or skips it when a GradScaler found
non-finite gradients. The probe hooks the innermost torch optimizer, so its step ends
exactly once per step the optimizer really takes, after the framework has unscaled,
accumulated and clipped the gradients.

The framework's GradScaler goes to watch(scaler=...): output gradients hooked in the
backward are divided by its scale. A step it skips on overflow is dropped: the callbacks
count the optimizer steps the framework attempted, and when one was not taken they call
Probe.discard_step() before the next batch, so the skipped micro-batches' forward
statistics, deltas and losses do not carry into the next step taken.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gradprobe.attach import watch
from gradprobe.probe.probe import Probe

# attributes under which the known wrappers keep the optimizer they wrap:
# LightningOptimizer._optimizer, accelerate's AcceleratedOptimizer.optimizer
WRAPPED_ATTRIBUTES = ("_optimizer", "optimizer")
# wrappers nest at most a few deep; a longer chain is a cycle or not a wrapper
MAX_WRAPPER_DEPTH = 8
# watch() arguments a callback sets itself
FIXED_WATCH_ARGS = ("model", "optimizer", "run_dir", "scaler")
# watch() arguments about writing, dropped on the ranks that do not write
WRITER_ONLY = ("overwrite", "resume", "tensorboard")


def real_optimizer(optimizer: Any) -> torch.optim.Optimizer:
    """The torch optimizer whose step() actually updates the weights, under any wrappers.

    Args:
        optimizer: a torch optimizer, or a framework wrapper around one.

    Raises:
        TypeError: no torch.optim.Optimizer was found under `optimizer`.
    """
    current = optimizer
    for _ in range(MAX_WRAPPER_DEPTH):
        inner = next(
            (
                getattr(current, a)
                for a in WRAPPED_ATTRIBUTES
                if isinstance(getattr(current, a, None), torch.optim.Optimizer)
            ),
            None,
        )
        if inner is None or inner is current:
            break
        current = inner
    if not isinstance(current, torch.optim.Optimizer):
        raise TypeError(
            f"found no torch.optim.Optimizer under {type(optimizer).__name__} (looked at "
            f"attributes {', '.join(WRAPPED_ATTRIBUTES)}); the probe hooks the optimizer's step"
        )
    return current


def check_watch_options(options: dict[str, Any]) -> dict[str, Any]:
    """`options` checked to be keyword arguments of `gradprobe.watch` (a copy).

    Raises:
        TypeError: an option watch() does not take, or one the callback sets itself.
    """
    allowed = [p for p in inspect.signature(watch).parameters if p not in FIXED_WATCH_ARGS]
    for key in options:
        if key in FIXED_WATCH_ARGS:
            raise TypeError(f"{key}= is set by the callback; give run_dir= to the callback")
        if key not in allowed:
            raise TypeError(
                f"{key!r} is not an option of gradprobe.watch; allowed: {', '.join(allowed)}"
            )
    return dict(options)


def attach(
    model: nn.Module,
    optimizer: Any,
    run_dir: str | Path | None,
    options: dict[str, Any],
    *,
    writer: bool,
    scaler: Any = None,
) -> Probe:
    """gradprobe.watch on `model` and the real optimizer under `optimizer`.

    Every rank of a distributed run gets a probe, so that the probe's collectives (its
    flushes all-reduce the ranks' statistics) are matched on every rank; only the writer
    (global rank 0) writes `run_dir` and TensorBoard events, the others keep their record
    in memory (also when watch(distributed=False) makes each rank record its own).

    Args:
        model: the module whose layers are watched.
        optimizer: the optimizer the framework steps (wrapped or not).
        run_dir: the run directory the writer writes.
        options: other keyword arguments of gradprobe.watch.
        writer: whether this process writes the run directory.
        scaler: the framework's torch.amp.GradScaler, or None.
    """
    if not writer:
        options = {k: v for k, v in options.items() if k not in WRITER_ONLY}
        run_dir = None
    if not isinstance(scaler, torch.amp.GradScaler):
        scaler = None  # another framework's loss scaler: nothing the probe can read
    return watch(model, real_optimizer(optimizer), run_dir=run_dir, scaler=scaler, **options)


def discard_if_skipped(probe: Probe, skipped: int, discarded: int) -> bool:
    """Probe.discard_step() when an optimizer step was skipped since the last call.

    Args:
        probe: the callback's probe.
        skipped: steps skipped so far (attempted - taken).
        discarded: skipped steps already discarded.

    Returns:
        whether the step just attempted was skipped (and discarded).
    """
    if skipped <= discarded:
        return False
    probe.discard_step()
    return True


def unscale_before_step(optimizer: torch.optim.Optimizer, scaler: Any) -> Callable[[], None]:
    """Make `scaler` unscale the gradients before `optimizer.step()`; returns the undo.

    An optimizer that unscales inside its own step (`fused=True`: torch marks it
    `_step_supports_amp_scaling`) is stepped by GradScaler even on overflow, with the
    gradients still scaled: its step hooks would read scaled gradients and count skipped
    steps. Switched off, GradScaler takes its standard path, as for any other optimizer:
    unscale_, then step only when every gradient is finite (one host read of the
    overflow flag per step). The update is the same: the kernel gets unscaled gradients
    instead of unscaling them itself (bit-identical for GradScaler's power-of-two scales,
    tested). One thing changes: a skipped step now calls no step(), so accelerate sees
    it as skipped and does not advance the Trainer's lr schedule on it, as it does for
    every non-fused optimizer (with the fused one it misses the skip).

    Args:
        optimizer: the real torch optimizer.
        scaler: the framework's GradScaler, or None (no loss scaling: nothing to do).

    Returns:
        a function that gives the optimizer back its own unscaling.
    """
    enabled = scaler is not None and getattr(scaler, "is_enabled", lambda: False)()
    if not (enabled and getattr(optimizer, "_step_supports_amp_scaling", False)):
        return lambda: None
    optimizer._step_supports_amp_scaling = False

    def restore() -> None:
        optimizer._step_supports_amp_scaling = True

    return restore


def scalar_loss(output: Any) -> torch.Tensor | None:
    """The scalar loss tensor in a training step's or a model's output, or None.

    Args:
        output: a tensor, a mapping with "loss", or an object with a `loss` attribute
            (a Hugging Face ModelOutput).
    """
    if isinstance(output, dict) or hasattr(output, "keys"):
        loss = output.get("loss") if hasattr(output, "get") else None
    else:
        loss = output if isinstance(output, torch.Tensor) else getattr(output, "loss", None)
    if isinstance(loss, torch.Tensor) and loss.numel() == 1:
        return loss.detach()
    return None


class ProbeOwner:
    """What a framework callback does with the probe it attached: close it, count skips.

    A subclass sets `probe` when it attaches, `_attempted` (optimizer steps the framework
    called for, taken or skipped), `_first_step` (the probe's step count at attach) and
    `_restore` (undoes unscale_before_step), and may extend `_release()`.
    """

    probe: Probe | None = None
    _attempted = 0
    _first_step = 0

    def _restore(self) -> None:
        """Undo unscale_before_step (replaced per instance when it changed something)."""

    def _attach(
        self,
        model: nn.Module,
        optimizer: Any,
        run_dir: str | Path | None,
        options: dict[str, Any],
        *,
        writer: bool,
        scaler: Any,
    ) -> Probe:
        """`attach` the probe, make `scaler` unscale before the step, reset the counts."""
        self.probe = attach(model, optimizer, run_dir, options, writer=writer, scaler=scaler)
        self._restore = unscale_before_step(real_optimizer(optimizer), scaler)
        self._attempted, self._first_step, self._discarded = 0, self.probe.step_count, 0
        return self.probe

    def _release(self) -> None:
        """Hand back what the callback changed in the framework (before the probe closes)."""
        self._restore()
        self._restore = lambda: None

    def close(self, status: str = "done", error: str | None = None) -> None:
        """Remove every hook, flush, and mark the run `status` (idempotent)."""
        self._release()
        probe = self.probe
        if probe is None or probe.closed:
            return
        try:
            probe.annotate(skipped_steps=self.skipped_steps)
        finally:
            probe.close(status, error)

    @property
    def skipped_steps(self) -> int:
        """Optimizer steps the framework called for that were not taken (AMP overflow)."""
        if self.probe is None:
            return 0
        return self._attempted - (self.probe.step_count - self._first_step)

    def record(self):
        """The probe's Record of the last training run (a gradprobe.Record)."""
        if self.probe is None:
            raise RuntimeError("no probe yet: the callback attaches it when training starts")
        return self.probe.record()
