"""Small runs for the report's tests: a deep MLP on random data under gp.watch."""

from __future__ import annotations

from pathlib import Path

import torch

import gradprobe as gp


def train_run(
    run_dir: Path,
    activation: type,
    *,
    steps: int = 30,
    interrupt_at: int | None = None,
    depth: int = 4,
    width: int = 8,
    batch: int = 64,
    **watch_options,
) -> Path:
    """Train `depth` Linear+activation layers with gp.watch writing `run_dir`.

    Args:
        run_dir: where the run goes.
        activation: the activation module class (torch.nn.Sigmoid, ...).
        steps: SGD steps.
        interrupt_at: raise KeyboardInterrupt at this step (an interrupted run).
        depth, width, batch: the net and the batch.
        **watch_options: more arguments of gp.watch.

    Returns:
        run_dir.
    """
    torch.manual_seed(0)
    layers = [m for _ in range(depth) for m in (torch.nn.Linear(width, width), activation())]
    model = torch.nn.Sequential(*layers, torch.nn.Linear(width, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(batch, width), torch.randint(0, 2, (batch,))
    config = {"activation": activation.__name__, "depth": depth}
    with gp.watch(model, opt, run_dir=run_dir, config=config, **watch_options) as probe:
        for step in range(steps):
            if step == interrupt_at:
                raise KeyboardInterrupt
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            probe.log_loss(loss)
    return run_dir


def train_trio(root: Path, train, interrupted: str = "interrupted") -> dict[str, Path]:
    """Three runs under `root` by `train(run_dir, activation, interrupt_at=None)`: sigmoid and
    ReLU to the end, tanh stopped by Ctrl-C at step 12 (its status "interrupted")."""
    import pytest

    runs = {"sigmoid": train(root / "sigmoid", torch.nn.Sigmoid)}
    runs["relu"] = train(root / "relu", torch.nn.ReLU)
    with pytest.raises(KeyboardInterrupt):
        train(root / interrupted, torch.nn.Tanh, interrupt_at=12)
    runs[interrupted] = root / interrupted
    return runs
