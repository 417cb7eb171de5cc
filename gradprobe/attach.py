"""`gradprobe.watch`, defined here: attach a probe to a model, recording to memory or a run dir."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from gradprobe.probe.probe import Probe
from gradprobe.probe.schedule import Schedule
from gradprobe.record.sink import MemorySink, RunDirSink


def watch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    every: int | str | Schedule = 1,
    detail_every: int | str | Schedule = 10,
    run_dir: str | Path | None = None,
    activations: bool = True,
    weight_change: bool | None = None,
    delta: str = "auto",
    flush_every: int = 100,
    flush_secs: float = 10.0,
    unknown: str = "hook",
    overwrite: bool = False,
    resume: bool = False,
    config: Any = None,
) -> Probe:
    """Record per-layer gradient flow of `model` in a training loop.

    Args:
        model: any torch.nn.Module; every submodule that owns parameters is a layer.
        optimizer: its step() ends each training step (hooks: weights before, changes
            after). Without it, call probe.step() after each update.
        every: record every n-th step (int >= 1), a preset ("log"), or a callable
            step -> bool.
        detail_every: of the recorded steps, those that also measure what needs extra
            passes over parameter-sized memory: grad_abs_mean/max, weight_norm, the
            update quantities, saturation, dead units and abs_min_nonzero, and for
            RNN/LSTM/GRU layers the series delta_norm_t (dC/dh_t through time, by
            replaying the recurrence); NaN on other steps. It counts recorded steps:
            every=10, detail_every=10 measures in detail every 100th step (a callable
            gets the recorded step's index 0, 1, 2, ...). 1 measures everything at
            every recorded step. Non-finite counts are exact at every recorded step,
            with no host read between flushes.
        run_dir: directory for run.json and metrics.sqlite (committed at every flush);
            None keeps the record in memory only.
        activations: record activation statistics (forward hooks).
        weight_change: record update_norm, update_ratio and weight_change_mean, which
            keeps one copy of the weights; None: on while that copy is <= 256 MiB.
        delta: "auto" reads delta from the bias gradient where it equals it (Linear, Conv,
            norm layers) and hooks the output elsewhere; "hook" hooks every output.
        flush_every: steps kept on the device between flushes to the host.
        flush_secs: flush at least this often, so a crash loses little.
        unknown: parameter-owning module types gradprobe does not know: "hook", "skip" or
            "error".
        overwrite: replace a run already in run_dir.
        resume: append to a run already in run_dir, continuing its step count.
        config: JSON-able settings saved in run.json.

    Returns:
        a Probe; also a context manager that closes it (removing every hook) on exit.
    """
    if not isinstance(model, nn.Module):
        # checked here too, so no run directory is created for a bad call
        raise TypeError(f"watch() needs a torch.nn.Module as model; got {type(model).__name__}")
    if run_dir is None and (overwrite or resume):
        raise ValueError("overwrite= and resume= need a run_dir")
    made: list[MemorySink | RunDirSink] = []

    def make_sink() -> MemorySink | RunDirSink:
        if run_dir is None:
            made.append(MemorySink(config))
        else:
            made.append(RunDirSink(run_dir, config=config, overwrite=overwrite, resume=resume))
        return made[0]

    try:
        return Probe(
            model,
            optimizer,
            make_sink,
            every=every,
            detail_every=detail_every,
            activations=activations,
            weight_change=weight_change,
            delta=delta,
            flush_every=flush_every,
            flush_secs=flush_secs,
            unknown=unknown,
        )
    except BaseException as exc:
        if made:  # the probe failed after making its sink: say so in the run
            made[0].finish("failed", f"{type(exc).__name__}: {exc}")
        raise
