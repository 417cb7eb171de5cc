"""The gradient monitors people use today, as callbacks run after each backward.

Each `attach_*` takes a model and a scratch directory and returns (callback, close):
callback(step) runs after loss.backward() and before optimizer.step(), where Lightning's
`on_before_optimizer_step` and the usual hand-written loops put it. A monitor whose
package is not installed raises MissingPackage (the benchmark prints that it skipped it).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable

from torch import nn

Callback = Callable[[int], None]


class MissingPackage(RuntimeError):
    """The monitor's package is not importable here."""


def attach_item_norms(model: nn.Module, tmp: str) -> tuple[Callback, Callable[[], None]]:
    """Lightning's `grad_norm` pattern: per-parameter 2-norms, each read with .item().

    lightning.pytorch.utilities.grad_norm returns one norm tensor per parameter and the
    total; `self.log_dict` then reads each to the host (one sync per parameter).
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    log: dict[str, float] = {}

    def callback(step: int) -> None:
        total = 0.0
        for name, p in named:
            if p.grad is not None:
                value = p.grad.detach().norm(2).item()
                log[f"grad_2.0_norm/{name}"] = value
                total += value * value
        log["grad_2.0_norm_total"] = total**0.5

    return callback, lambda: None


def attach_grad_flow(model: nn.Module, tmp: str) -> tuple[Callback, Callable[[], None]]:
    """The `plot_grad_flow` forum pattern: mean and max |g| of every weight, with .item()."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad and "bias" not in n]
    means: list[float] = []
    maxes: list[float] = []

    def callback(step: int) -> None:
        means.clear()
        maxes.clear()
        for _name, p in named:
            if p.grad is not None:
                a = p.grad.detach().abs()
                means.append(a.mean().item())
                maxes.append(a.max().item())

    return callback, lambda: None


def attach_tensorboard(model: nn.Module, tmp: str) -> tuple[Callback, Callable[[], None]]:
    """TensorBoard: `add_histogram` of every parameter's gradient at every step."""
    if importlib.util.find_spec("tensorboard") is None:
        raise MissingPackage("tensorboard is not installed")
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(tmp)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]

    def callback(step: int) -> None:
        for name, p in named:
            if p.grad is not None:
                writer.add_histogram(f"grad/{name}", p.grad, step)

    return callback, writer.close


# wandb offline and quiet, every file it writes (run, cache, config, artefacts) under the
# scratch directory: it must not reach the network or the user's home
_WANDB_ENV = {"WANDB_MODE": "offline", "WANDB_SILENT": "true"}
_WANDB_DIRS = ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR")


def attach_wandb(model: nn.Module, tmp: str) -> tuple[Callback, Callable[[], None]]:
    """`wandb.watch(model, log="all", log_freq=1)` in offline mode, logging every step.

    log="all" histograms every parameter and its gradient (64 bins, torch.histc) in
    hooks; log_freq=1 takes them at every step. System metrics are sampled as usual.
    """
    if importlib.util.find_spec("wandb") is None:
        raise MissingPackage("wandb is not installed")
    os.environ.update(_WANDB_ENV)
    os.environ.update({name: tmp for name in _WANDB_DIRS})
    import wandb

    run = wandb.init(
        mode="offline", dir=tmp, project="gradprobe-overhead", reinit="finish_previous"
    )
    wandb.watch(model, log="all", log_freq=1)

    def callback(step: int) -> None:
        run.log({"step": step})  # wandb.watch's hooks log with the next run.log

    return callback, run.finish


MONITORS = {
    "per-parameter .item() norms (Lightning grad_norm)": attach_item_norms,
    "per-weight mean/max abs(g) .item() (plot_grad_flow)": attach_grad_flow,
    "TensorBoard add_histogram per parameter per step": attach_tensorboard,
    "wandb.watch(log='all', log_freq=1), offline": attach_wandb,
}
