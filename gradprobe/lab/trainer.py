"""`train`: mini-batch SGD on an Experiment with the probe attached, one run directory.

Per step the loop does the forward, backward and optimizer step and hands the loss to
the probe, with no host read of its own: the losses stay on the device, in a window that is
read every CHECK_EVERY steps to catch a non-finite loss (naming the exact step) and to
move the progress bar.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gradprobe.attach import watch
from gradprobe.lab.build import Setup, build
from gradprobe.lab.config import Experiment
from gradprobe.lab.losses import accuracy
from gradprobe.lab.progress import NoProgress, RichProgress, make_progress
from gradprobe.record import Record

# Steps between host reads of the loss window: one read per 32 steps keeps the loop free
# of per-step synchronisation, and a NaN run trains at most 31 steps past its first NaN.
CHECK_EVERY = 32
# Examples per forward pass when evaluating: bounds the memory of a full-set evaluation.
EVAL_CHUNK = 4096


@dataclass(frozen=True, repr=False)
class TrainResult:
    """What a training run left behind.

    Attributes:
        record: the probe's Record (from the run directory when there is one).
        run_dir: the run directory, or None for a run kept in memory.
        evaluation: one dict per epoch: epoch, step, {train,val,test}_loss and, for
            classification, {train,val,test}_accuracy (None where not finite).
        state_dict: the final weights (copies).
        status: "done" or "failed" (a non-finite loss).
        error: why it failed, naming the step; None when done.
    """

    record: Record
    run_dir: Path | None
    evaluation: list[dict[str, Any]]
    state_dict: dict[str, Tensor]
    status: str
    error: str | None

    def final(self, key: str) -> float | None:
        """The last evaluation's `key` (e.g. "test_accuracy"), None if there is none."""
        return self.evaluation[-1].get(key) if self.evaluation else None

    def __repr__(self) -> str:
        where = str(self.run_dir) if self.run_dir is not None else "memory"
        return (
            f"TrainResult({self.status}, {len(self.record)} steps, "
            f"{len(self.evaluation)} evaluations, {where})"
        )


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None  # JSON has no NaN


@torch.no_grad()
def _outputs(model: torch.nn.Module, x: Tensor) -> Tensor:
    return torch.cat([model(x[i : i + EVAL_CHUNK]) for i in range(0, len(x), EVAL_CHUNK)])


@torch.no_grad()
def evaluate(setup: Setup, epoch: float, step: int) -> dict[str, Any]:
    """Loss (and accuracy for classification) on every split, in eval mode."""
    data, exp, model = setup.dataset, setup.experiment, setup.model
    row: dict[str, Any] = {"epoch": epoch, "step": step}
    model.eval()  # norm layers use their running statistics
    try:
        for split in ("train", "val", "test"):
            x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
            if x is None:
                continue
            out = _outputs(model, x)
            row[f"{split}_loss"] = _finite(float(setup.loss_fn(out, y)))
            if data.task == "classification":
                row[f"{split}_accuracy"] = _finite(accuracy(out, y, exp.loss))
    finally:
        model.train()
    return row


class _Loop:
    """The training loop's state: steps done, the loss window, evaluations."""

    def __init__(self, setup: Setup, probe) -> None:
        exp = setup.experiment
        self.setup, self.probe, self.bar = setup, probe, NoProgress()
        self.n_train = len(setup.dataset.x_train)
        self.steps_per_epoch = math.ceil(self.n_train / exp.batch_size)
        self.total = exp.epochs * self.steps_per_epoch
        if exp.steps is not None:
            self.total = min(self.total, exp.steps)
        self.step = 0
        self.window: list[Tensor] = []  # detached losses of the steps since the last read
        self.evaluation: list[dict[str, Any]] = []
        self.error: str | None = None

    def run(self, bar: NoProgress | RichProgress) -> None:
        """Train every epoch (or up to `steps`), evaluating after each; `bar` shows it."""
        self.bar = bar
        for epoch in range(self.setup.experiment.epochs):
            self._epoch()
            if self.error is not None:
                return
            done = self.step / self.steps_per_epoch  # a fraction when `steps` cut it short
            self._evaluate(epoch + 1 if self.step % self.steps_per_epoch == 0 else done)
            if self.step >= self.total:
                return

    def _epoch(self) -> None:
        s = self.setup
        x, y, batch = s.dataset.x_train, s.dataset.y_train, s.experiment.batch_size
        order = torch.randperm(self.n_train, generator=s.data_generator)
        for start in range(0, self.n_train, batch):
            idx = order[start : start + batch]
            s.optimizer.zero_grad(set_to_none=True)
            loss = s.loss_fn(s.model(x[idx]), y[idx])
            loss.backward()
            s.optimizer.step()
            self.probe.log_loss(loss)
            self.window.append(loss.detach())
            self.step += 1
            if len(self.window) == CHECK_EVERY or self.step >= self.total:
                self._check()
            if self.error is not None or self.step >= self.total:
                return
        self._check()

    def _check(self) -> None:
        """Read the loss window: stop at a non-finite loss, else move the bar."""
        if not self.window:
            return
        losses = torch.stack(self.window).float().cpu().numpy()  # the one host read
        first = self.step - len(self.window)
        bad = np.flatnonzero(~np.isfinite(losses))
        self.window = []
        if bad.size:
            at = first + int(bad[0])
            self.error = (
                f"the loss became non-finite ({losses[bad[0]]}) at step {at}; training "
                f"stopped after step {self.step - 1}"
            )
        self.bar.update(self.step, loss=float(losses.mean()))

    def _evaluate(self, epoch: float) -> None:
        row = evaluate(self.setup, epoch, self.step)
        self.evaluation.append(row)
        self.probe.annotate(evaluation=self.evaluation)
        shown = {k: row.get(f"{k}_accuracy") for k in ("val", "test")}
        self.bar.update(self.step, **{f"{k} acc": v for k, v in shown.items()})


def train(
    experiment: Experiment,
    out: str | Path | None = None,
    *,
    progress: bool = True,
    overwrite: bool = False,
) -> TrainResult:
    """Train `experiment` with the probe on, writing its run directory `out`.

    A non-finite loss stops the run, which is kept with status "failed" and an error
    naming the step. Ctrl-C (KeyboardInterrupt) keeps every step recorded so far, marks
    the run "interrupted" and re-raises.

    Args:
        experiment: what to train; its seed fixes every random draw.
        out: the run directory; None keeps the record in memory.
        progress: show a rich progress bar (only on a terminal).
        overwrite: replace a run already in `out`.

    Returns:
        a TrainResult.
    """
    setup = build(experiment)
    probe = watch(
        setup.model,
        optimizer=setup.optimizer,
        run_dir=out,
        every=experiment.every,
        detail_every=experiment.detail_every,
        config=experiment.to_dict(),
        overwrite=overwrite,
    )
    with probe:
        loop = _Loop(setup, probe)
        probe.annotate(
            dataset=setup.dataset.description,
            n_train=loop.n_train,
            steps_per_epoch=loop.steps_per_epoch,
            **({"name": experiment.name} if experiment.name else {}),
        )
        label = experiment.name or (Path(out).name if out is not None else "train")
        with make_progress(loop.total, enabled=progress, description=label) as bar:
            loop.run(bar)
        if loop.error is not None:
            probe.close("failed", loop.error)
    state = {k: v.detach().clone() for k, v in setup.model.state_dict().items()}
    return TrainResult(
        record=probe.record(),
        run_dir=None if out is None else Path(out),
        evaluation=loop.evaluation,
        state_dict=state,
        status="done" if loop.error is None else "failed",
        error=loop.error,
    )
