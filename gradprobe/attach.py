"""`gradprobe.watch`, defined here: attach a probe to a model, recording to memory or a run dir."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from gradprobe.probe.distributed import is_writer
from gradprobe.probe.probe import Probe
from gradprobe.probe.schedule import DETAIL_EVERY, Schedule
from gradprobe.record.sink import MemorySink, RunDirSink


def watch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    every: int | str | Schedule = 1,
    detail_every: int | str | Schedule = DETAIL_EVERY,
    run_dir: str | Path | None = None,
    activations: bool = True,
    weight_change: bool | None = None,
    delta: str = "auto",
    flush_every: int = 100,
    flush_secs: float = 10.0,
    unknown: str = "hook",
    histograms: int | str | Schedule | None = None,
    overwrite: bool = False,
    resume: bool = False,
    config: Any = None,
    tensorboard: bool | str | Path = False,
    distributed: bool | None = None,
    dist_timeout: float | None = None,
    scaler: torch.amp.GradScaler | None = None,
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
            replaying the recurrence); NaN on other steps. An int n: every n-th; the
            default, Every(10, until=1000, then=100): every 10th recorded step for the
            first 1000, every 100th after (a detail step costs ~35% of a step of a
            784-1000-750-500-10 MLP: ~0.4% of each step once past the first 1000); a
            preset ("log"); or a callable. It counts recorded steps: every=10,
            detail_every=10 measures in detail every 100th step (a callable gets the
            recorded step's index 0, 1, 2, ...). 1 measures everything at every
            recorded step. Non-finite values are flagged at every recorded step
            (grad_all_finite / act_all_finite, from the sums) and counted exactly on
            detail steps, with no host read between flushes.
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
        histograms: record per-layer histograms of |g| (weight and bias gradients, read
            where the other gradient statistics are: after accumulation and AMP
            unscaling) as `rec.series["grad_hist"]`, array of shape (n_steps, n_layers,
            162), NaN on steps without one. None or False: off (the default). An int n:
            every n-th recorded step; a preset or a callable as for `detail_every` (it
            gets the recorded step's index). Bins: gradprobe.stats.histogram.HIST_EDGES,
            fixed log-spaced edges 1e-30..1e10 (4 per decade), so histograms of any
            steps, runs or ranks merge by summing counts; NaN/Inf are not counted.
        overwrite: replace a run already in run_dir.
        resume: append to a run already in run_dir, continuing its step count.
        config: JSON-able settings saved in run.json.
        tensorboard: also write TensorBoard events at every flush (needs the tensorboard
            package): True writes to run_dir/tb (needs a run_dir), a path writes there;
            tags as in gradprobe.viz.tensorboard.
        distributed: under torch.distributed, record the global batch and the whole model:
            every flush all-reduces the ranks' statistics, each quantity as its maths needs
            (gradprobe.probe.distributed), and only rank 0 writes run_dir (and TensorBoard);
            the other ranks' probe.record() holds the same figures, in memory. Every rank
            calls watch() after wrapping the model (DDP, fully_shard), records the same
            steps, and calls flush(), record() and close() together: they are collective,
            and flush_secs is ignored. None: on when a process group of more than one rank
            is initialised; False: each rank records its own figures on its own.
        dist_timeout: seconds a rank waits for the others at a flush; past it the probe
            raises DistributedError (a rank died or hung) and the run is marked failed.
            None: the process group's timeout.
        scaler: the torch.amp.GradScaler of an fp16 loop (None: no loss scaling, or a
            disabled scaler). Parameter gradients are read unscaled anyway (at the
            optimizer's step); with the scaler the probe also divides the output
            gradients its tensor hooks receive in the backward (hooked delta_norm,
            delta_norm_t) by the scale of that backward, read on the device, and drops a
            step the scaler skipped on overflow: what the forward and backward passes of
            that step recorded does not carry into the next step taken (the probe sees
            the skip at the next forward of `model`; Probe.discard_step does it by hand).
            Details and limits: gradprobe.probe.amp. The framework callbacks pass theirs.

    Returns:
        a Probe; also a context manager that closes it (removing every hook) on exit.
    """
    if not isinstance(model, nn.Module):
        # checked here too, so no run directory is created for a bad call
        raise TypeError(f"watch() needs a torch.nn.Module as model; got {type(model).__name__}")
    if run_dir is None and (overwrite or resume):
        raise ValueError("overwrite= and resume= need a run_dir")
    made: list[MemorySink | RunDirSink] = []
    writer = is_writer(distributed)  # ranks other than 0 keep their record in memory
    wrap = None
    if tensorboard is not False and writer:  # imported only when asked: tensorboard is an extra
        from gradprobe.viz.tensorboard_sink import live_sink

        wrap = live_sink(tensorboard, run_dir, overwrite=overwrite, resume=resume)

    def make_sink() -> MemorySink | RunDirSink:
        if run_dir is None or not writer:
            made.append(MemorySink(config))
        else:
            made.append(RunDirSink(run_dir, config=config, overwrite=overwrite, resume=resume))
        if wrap is not None:
            made[0] = wrap(made[0])
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
            histograms=histograms,
            distributed=distributed,
            dist_timeout=dist_timeout,
            scaler=scaler,
        )
    except BaseException as exc:
        if made:  # the probe failed after making its sink: say so in the run
            made[0].finish("failed", f"{type(exc).__name__}: {exc}")
        raise
