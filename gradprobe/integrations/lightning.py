"""`GradprobeCallback`: the probe in a Lightning Trainer, from train start to end or failure.

    trainer = lightning.Trainer(callbacks=[GradprobeCallback(every=1, detail_every=10)])
    trainer.fit(model, data)
    rec = trainer.callbacks[0].record()

The probe hooks the LightningModule's layers and the torch optimizer under Lightning's
`LightningOptimizer`, so a step is what the optimizer really took: with
`accumulate_grad_batches=k` one step per k batches, its gradients summed over them; with
`precision="16-mixed"` the gradients after the GradScaler unscaled them (and after
gradient clipping), and a step the scaler skips on overflow is no step (a fused optimizer,
which would unscale inside its step, gets them unscaled before it: see
`gradprobe.integrations.common.unscale_before_step`). What the probe recorded on the
batches of a skipped step (forward statistics, hooked deltas, losses) is dropped
(Probe.discard_step at the batch end), and the plugin's scaler goes to watch(scaler=...),
so hooked output gradients are read unscaled too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from gradprobe.integrations.common import (
    ProbeOwner,
    check_watch_options,
    discard_if_skipped,
    scalar_loss,
)
from gradprobe.probe.probe import Probe, status_of


class GradprobeCallback(ProbeOwner, pl.Callback):
    """Attaches gradprobe.watch at train start; closes it at train end or on an exception.

    Args:
        run_dir: the run directory; None: "gradprobe" under the trainer's log_dir (or its
            default_root_dir when it has no logger).
        optimizer_index: which of trainer.optimizers ends the probe's steps.
        log_loss: log each batch's training loss (the mean over the micro-batches of a step).
        **watch_options: other arguments of gradprobe.watch (every, detail_every,
            activations, weight_change, delta, flush_every, flush_secs, unknown,
            overwrite, resume, config).

    Only global rank 0 writes the run directory; other ranks record in memory.
    """

    def __init__(
        self,
        run_dir: str | Path | None = None,
        *,
        optimizer_index: int = 0,
        log_loss: bool = True,
        **watch_options: Any,
    ) -> None:
        if isinstance(optimizer_index, bool) or not isinstance(optimizer_index, int):
            raise TypeError(f"optimizer_index={optimizer_index!r} must be an int")
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.optimizer_index = optimizer_index
        self.log_loss = bool(log_loss)
        self.watch_options = check_watch_options(watch_options)
        self.probe: Probe | None = None
        self._attempted = 0  # optimizer steps Lightning asked for (taken or skipped)
        self._first_step = 0
        self._discarded = 0  # skipped steps whose batches the probe has dropped
        self._restore = lambda: None  # undoes unscale_before_step

    def resolve_run_dir(self, trainer: pl.Trainer) -> Path:
        """The run directory for `trainer`: run_dir, else <log_dir>/gradprobe."""
        if self.run_dir is not None:
            return self.run_dir
        return Path(trainer.log_dir or trainer.default_root_dir) / "gradprobe"

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._close_stale()
        optimizers = trainer.optimizers
        if not 0 <= self.optimizer_index < len(optimizers):
            raise ValueError(
                f"optimizer_index={self.optimizer_index} is out of range: the trainer has "
                f"{len(optimizers)} optimizer(s)"
            )
        optimizer = optimizers[self.optimizer_index]
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        self._attach(
            pl_module,
            optimizer,
            self.resolve_run_dir(trainer),
            self.watch_options,
            writer=trainer.is_global_zero,
            scaler=scaler,
        )
        self.probe.annotate(
            framework=f"lightning {pl.__version__}",
            precision=str(trainer.precision),
            accumulate_grad_batches=trainer.accumulate_grad_batches,
            world_size=trainer.world_size,
        )

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self._attempted += 1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.probe is None or self.probe.closed:
            return
        if discard_if_skipped(self.probe, self.skipped_steps, self._discarded):
            self._discarded = self.skipped_steps
            return  # the step was skipped: its loss is no step's
        if not self.log_loss:
            return
        loss = scalar_loss(outputs)
        if loss is not None:  # Lightning divided it by accumulate_grad_batches for backward
            self.probe.log_loss(loss * trainer.accumulate_grad_batches)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.close("done")

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self.close(*status_of(exception))

    def teardown(self, trainer, pl_module, stage: str) -> None:
        # fit() ended without on_train_end or on_exception (e.g. a signal): never leave hooks
        self.close("interrupted", "the Trainer tore down before the training ended")

    def _close_stale(self) -> None:
        if self.probe is not None and not self.probe.closed:
            self.close("interrupted", "a new fit() started before the last one ended")

    def __repr__(self) -> str:
        return (
            f"GradprobeCallback(run_dir={self.run_dir}, optimizer_index={self.optimizer_index}, "
            f"log_loss={self.log_loss}, probe={self.probe!r})"
        )
