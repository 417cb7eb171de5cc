"""`GradprobeTrainerCallback`: the probe in a Hugging Face Trainer.

    callback = GradprobeTrainerCallback(detail_every=10)
    with callback:                      # closes the probe even when train() raises
        Trainer(model, args, train_dataset=data, callbacks=[callback]).train()
    rec = callback.record()

The probe hooks the model's layers and the torch optimizer under accelerate's
`AcceleratedOptimizer`, so a step is what the optimizer really took: with
`gradient_accumulation_steps=k` one step per k micro-batches, its gradients summed over
them; the gradients after the GradScaler unscaled them and after `max_grad_norm`
clipping; a step skipped on AMP overflow is no step (the default fused AdamW, which would
unscale inside its step, gets them unscaled before it: see
`gradprobe.integrations.common.unscale_before_step`). What the probe recorded on the
micro-batches of a skipped step (forward statistics, hooked deltas, losses) is dropped
(Probe.discard_step at the step end), and accelerate's scaler goes to
watch(scaler=...), so hooked output gradients are read unscaled too.

The Trainer has no exception hook: when train() raises, on_train_end never runs. Used as a
context manager (above), the callback then closes the probe as failed (interrupted for
Ctrl-C) and every hook is removed. Without it, the hooks stay until `callback.close()`, the
next train() (which closes the stale run as interrupted) or the process exit (the probe's
atexit handler marks the run interrupted).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import transformers
from torch import nn

from gradprobe.integrations.common import (
    ProbeOwner,
    check_watch_options,
    discard_if_skipped,
    scalar_loss,
)
from gradprobe.probe.probe import Probe, status_of


class GradprobeTrainerCallback(ProbeOwner, transformers.TrainerCallback):
    """Attaches gradprobe.watch at train begin; closes it at train end.

    Args:
        run_dir: the run directory; None: "gradprobe" under the Trainer's output_dir.
        log_loss: log each step's training loss as the Trainer itself logs it, read from
            the model output's `loss`: the mean over the step's micro-batches, or their
            sum when the Trainer passes the model `num_items_in_batch` (its loss is then
            a share of the step's).
        **watch_options: other arguments of gradprobe.watch (every, detail_every,
            activations, weight_change, delta, flush_every, flush_secs, unknown,
            overwrite, resume, config).

    Only the world's process 0 writes the run directory; other processes record in memory.
    """

    def __init__(
        self, run_dir: str | Path | None = None, *, log_loss: bool = True, **watch_options: Any
    ) -> None:
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.log_loss = bool(log_loss)
        self.watch_options = check_watch_options(watch_options)
        self.probe: Probe | None = None
        self._loss_hook: Any = None
        self._loss_sum: torch.Tensor | None = None  # the step's model losses, on the device
        self._n_micro = 0
        self._shares = False  # the losses are shares of the step's (num_items_in_batch)
        self._attempted = 0  # optimizer steps the Trainer called for (taken or skipped)
        self._first_step = 0
        self._discarded = 0  # skipped steps whose micro-batches the probe has dropped
        self._restore = lambda: None  # undoes unscale_before_step

    def resolve_run_dir(self, args: transformers.TrainingArguments) -> Path:
        """The run directory for `args`: run_dir, else <output_dir>/gradprobe."""
        if self.run_dir is not None:
            return self.run_dir
        return Path(args.output_dir or ".") / "gradprobe"

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        self.close("interrupted", "a new train() started before the last one ended")
        if not isinstance(model, nn.Module) or optimizer is None:
            raise TypeError(
                "GradprobeTrainerCallback needs the Trainer's model and optimizer at "
                f"on_train_begin; got model={type(model).__name__}, "
                f"optimizer={type(optimizer).__name__}"
            )
        # accelerate's AcceleratedOptimizer holds the GradScaler of fp16 training
        scaler = getattr(optimizer, "scaler", None)
        self._attach(
            model,
            optimizer,
            self.resolve_run_dir(args),
            self.watch_options,
            writer=state.is_world_process_zero,
            scaler=scaler,
        )
        self.probe.annotate(
            framework=f"transformers {transformers.__version__}",
            gradient_accumulation_steps=args.gradient_accumulation_steps,
            mixed_precision="fp16" if args.fp16 else "bf16" if args.bf16 else "no",
            max_grad_norm=args.max_grad_norm,
            world_size=args.world_size,
        )
        if self.log_loss:
            self._loss_hook = model.register_forward_hook(self._on_forward, with_kwargs=True)

    def _on_forward(self, module, args, kwargs, output) -> None:
        loss = scalar_loss(output) if torch.is_grad_enabled() else None
        if loss is None:  # evaluation, or a model that returns no loss
            return
        loss = loss.to(torch.float64)
        self._loss_sum = loss if self._loss_sum is None else self._loss_sum + loss
        self._n_micro += 1
        self._shares = kwargs.get("num_items_in_batch") is not None

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self._attempted += 1

    def on_step_end(self, args, state, control, **kwargs):
        if self.probe is None or self.probe.closed:
            return
        if discard_if_skipped(self.probe, self.skipped_steps, self._discarded):
            self._discarded = self.skipped_steps
            self._loss_sum, self._n_micro = None, 0  # a skipped step's losses are no step's
            return
        if self._loss_sum is None:
            return
        step_loss = self._loss_sum if self._shares else self._loss_sum / self._n_micro
        self._loss_sum, self._n_micro = None, 0
        self.probe.log_loss(step_loss)

    def on_train_end(self, args, state, control, **kwargs):
        self.close("done")

    def _release(self) -> None:
        super()._release()
        if self._loss_hook is not None:
            self._loss_hook.remove()
            self._loss_hook = None
        self._loss_sum, self._n_micro = None, 0

    def __enter__(self) -> GradprobeTrainerCallback:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(*status_of(exc))

    def __repr__(self) -> str:
        return (
            f"GradprobeTrainerCallback(run_dir={self.run_dir}, log_loss={self.log_loss}, "
            f"probe={self.probe!r})"
        )
