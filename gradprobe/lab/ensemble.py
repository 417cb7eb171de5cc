"""Several MLPs of one architecture trained side by side as one batched network.

One of Nielsen's [784, 30, 30, 10] networks takes ~5,000 tiny steps an epoch (mini-batch
10), and per-step Python overhead, not arithmetic, sets its speed. Stacking M members'
weights as (M, out, in) tensors makes each layer one batched product (torch.baddbmm) for
all members, so that overhead is paid once for M models. Each member keeps its own
weights, data order and probe record, equal within float32 rounding to training it alone:
the loss is the sum of the members' batch-mean losses, so autograd gives each member
exactly its own gradient, and one SGD with weight decay lambda / n on the weights makes
each member's update w <- (1 - eta lambda / n) w - eta dC/dw (gradprobe.lab.optim).
The batched network is gradprobe.lab.ensemble_mlp; this module trains it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gradprobe.lab.ensemble_mlp import EnsembleMLP
from gradprobe.lab.ensemble_mlp import _BatchedLinear as _BatchedLinear
from gradprobe.lab.ensemble_mlp import _layers_of as _layers_of
from gradprobe.lab.ensemble_mlp import _signature as _signature
from gradprobe.lab.ensemble_stats import EnsembleProbe
from gradprobe.probe.probe import WEIGHT_CHANGE_AUTO_BYTES, status_of
from gradprobe.probe.schedule import DETAIL_EVERY, Schedule
from gradprobe.record.record import Record
from gradprobe.record.sink import MemorySink, RunDirSink

__all__ = ["EnsembleMLP", "EnsembleProbe", "cross_entropy_cost", "train_ensemble"]


def cross_entropy_cost(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Nielsen's CrossEntropyCost on sigmoid outputs, the mean over the mini-batch.

    C = -sum_j [y_j ln a_j + (1 - y_j) ln(1 - a_j)] with a = sigmoid(z) (NNDL ch. 3,
    network2.py), computed from the logits z as BCE-with-logits, which is finite for any z.

    Args:
        logits: z of shape (..., B, k): (B, k) for one model, (M, B, k) for an ensemble.
        targets: one-hot y of the same shape.

    Returns:
        the batch-mean cost, shape (...): a scalar for one model, (M,) for an ensemble.
    """
    per_unit = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return per_unit.sum((-2, -1)) / logits.shape[-2]


def _check_number(name: str, value, low: float, *, integer: bool = False, strict=True) -> None:
    kind = numbers.Integral if integer else numbers.Real
    ok = isinstance(value, kind) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if strict else value >= low)
    if not ok:
        what = "an int" if integer else "a finite number"
        raise ValueError(f"{name}={value!r} must be {what} {'>' if strict else '>='} {low}")


def _check_data(net: EnsembleMLP, x, y) -> tuple[torch.Tensor, torch.Tensor]:
    """x (n, n_in) float and int labels y (n,) -> x and one-hot targets on the device."""
    n_in, k = net.sizes[0], net.sizes[-1]
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != n_in:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a tensor of shape (n, {n_in}); got {shape}")
    if not x.dtype.is_floating_point:
        raise ValueError(f"x must be floating point; got {x.dtype}")
    if not isinstance(y, torch.Tensor) or y.shape != (len(x),) or y.dtype.is_floating_point:
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"y must be an integer tensor of shape ({len(x)},); got {shape}")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= k):
        raise ValueError(f"labels y must lie in [0, {k}); got [{int(y.min())}, {int(y.max())}]")
    x = x.to(device=net.device, dtype=net.dtype).contiguous()
    return x, F.one_hot(y.to(net.device).long(), k).to(net.dtype)  # (n, k)


def _generators(seeds, generators, members: int) -> list[torch.Generator]:
    if (seeds is None) == (generators is None):
        raise ValueError("give exactly one of seeds= (one int per member) or generators=")
    given = list(seeds if seeds is not None else generators)
    if len(given) != members:
        raise ValueError(f"{len(given)} seeds/generators given for {members} members")
    if generators is not None:
        return given
    for s in given:
        _check_number("seed", s, 0, integer=True, strict=False)
    return [torch.Generator().manual_seed(int(s)) for s in given]


def _sinks(members: int, run_dirs, config, overwrite: bool) -> list:
    if run_dirs is None:
        return [MemorySink(config) for _ in range(members)]
    run_dirs = list(run_dirs)
    if len(run_dirs) != members:
        raise ValueError(f"{len(run_dirs)} run_dirs given for {members} members; need one each")
    return [RunDirSink(Path(d), config=config, overwrite=overwrite) for d in run_dirs]


def _sgd(groups: list[dict], lr: float) -> torch.optim.SGD:
    """torch.optim.SGD, fused where torch has the kernel: one pass per tensor, not three."""
    try:
        return torch.optim.SGD(groups, lr=lr, fused=True)
    except RuntimeError:  # no fused SGD kernel on this device
        return torch.optim.SGD(groups, lr=lr)


def _run_epoch(net, opt, probe, x, targets, generators, batch_size: int) -> None:
    """One pass over the data; each member in the order of its own permutation."""
    n, members = len(x), net.members
    order = torch.stack([torch.randperm(n, generator=g) for g in generators]).to(x.device)
    for start in range(0, n, batch_size):
        idx = order[:, start : start + batch_size].reshape(-1)  # (M * b,)
        b = idx.numel() // members
        opt.zero_grad(set_to_none=True)
        logits, acts = net.forward_with_activations(x.index_select(0, idx).view(members, b, -1))
        loss = cross_entropy_cost(logits, targets.index_select(0, idx).view(members, b, -1))
        loss.sum().backward()  # (M,): each member's gradient is its own loss's
        probe.before_update()
        opt.step()
        probe.end_step(acts, loss.detach())


def train_ensemble(
    models: Sequence[nn.Sequential] | EnsembleMLP,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    l2: float = 0.0,
    seeds: Sequence[int] | None = None,
    generators: Sequence[torch.Generator] | None = None,
    run_dirs: Sequence[str | Path] | None = None,
    every: int = 1,
    detail_every: int | str | Schedule = DETAIL_EVERY,
    flush_every: int = 100,
    weight_change: bool | None = None,
    overwrite: bool = False,
    config=None,
) -> list[Record]:
    """Train M models of one MLP architecture as one batched ensemble, each recorded.

    Each member does what this loop does for it alone, with gp.watch(model, opt) on:
    per epoch `order = torch.randperm(n, generator=g)`, mini-batches order[s:s + B]
    (the last one shorter when B does not divide n), Nielsen's cross-entropy cost
    (`cross_entropy_cost`), torch.optim.SGD(lr) with weight decay l2 / n on the weights.

    Args:
        models: solo nn.Sequential MLPs (fc1, act1, ..., fcL; see EnsembleMLP), whose
            weights are the members' initial weights and receive the trained ones; or an
            EnsembleMLP, trained in place.
        x: inputs of shape (n, n_in), float.
        y: int class labels of shape (n,); the targets are their one-hot vectors.
        epochs, batch_size, lr: passes over the data, mini-batch size B, eta.
        l2: Nielsen's lambda (weights decay by lambda / n, biases not at all).
        seeds: one data-order seed per member; or generators: one torch.Generator each.
        run_dirs: one run directory per member; None keeps the records in memory.
        every, detail_every, flush_every: the probe's schedule, as in gradprobe.watch.
        weight_change: record the update quantities; None: while the copy of the
            weights it needs is at most 256 MiB (as gradprobe.watch).
        overwrite: replace runs already in run_dirs.
        config: JSON-able settings saved in each member's run.json.

    Returns:
        each member's Record, in member order.
    """
    net = models if isinstance(models, EnsembleMLP) else EnsembleMLP(models)
    gens = _generators(seeds, generators, net.members)
    x, targets = _check_data(net, x, y)
    _check_number("epochs", epochs, 0, integer=True)
    _check_number("batch_size", batch_size, 0, integer=True)
    if batch_size > len(x):
        raise ValueError(f"batch_size={batch_size} is larger than the data ({len(x)} examples)")
    _check_number("lr", lr, 0)
    _check_number("l2", l2, 0, strict=False)
    opt = _sgd(net.param_groups(l2 / len(x)), lr)
    if weight_change is None:
        weight_change = sum(w.numel() * w.element_size() for w in net.weights) <= (
            WEIGHT_CHANGE_AUTO_BYTES
        )
    sinks = _sinks(net.members, run_dirs, config, overwrite)
    probe = net.probe(sinks, every, detail_every, flush_every, bool(weight_change))
    try:
        for _ in range(epochs):
            _run_epoch(net, opt, probe, x, targets, gens, batch_size)
    except BaseException as exc:
        probe.close(*status_of(exc))
        raise
    probe.close("done")
    if not isinstance(models, EnsembleMLP):
        net.load_into(models)
    return probe.records()
