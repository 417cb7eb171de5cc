"""Several MLPs of one architecture trained side by side as one batched network.

One of Nielsen's [784, 30, 30, 10] networks takes ~5,000 tiny steps an epoch (mini-batch
10), and per-step Python overhead, not arithmetic, sets its speed. Stacking M members'
weights as (M, out, in) tensors makes each layer one batched product (torch.baddbmm) for
all members, so that overhead is paid once for M models. Each member keeps its own
weights, data order and probe record, equal within float32 rounding to training it alone:
the loss is the sum of the members' batch-mean losses, so autograd gives each member
exactly its own gradient, and one SGD with weight decay lambda / n on the weights makes
each member's update w <- (1 - eta lambda / n) w - eta dC/dw (gradprobe.lab.optim).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gradprobe.lab.ensemble_stats import EnsembleProbe
from gradprobe.probe.activations import activation_kind
from gradprobe.probe.layers import describe, discover
from gradprobe.probe.probe import WEIGHT_CHANGE_AUTO_BYTES, status_of
from gradprobe.record.record import Record
from gradprobe.record.sink import MemorySink, RunDirSink

__all__ = ["EnsembleMLP", "EnsembleProbe", "cross_entropy_cost", "train_ensemble"]


class _BatchedLinear(torch.autograd.Function):
    """z = x W^T + b per member: x (M, B, in), W (M, out, in), b (M, out) -> (M, B, out).

    The weight gradient is formed as dz^T x, already in W's layout; autograd's own
    baddbmm backward forms (x^T dz)^T, which AccumulateGrad then copies to contiguous.
    """

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx, dz):
        x, weight = ctx.saved_tensors
        dx = torch.bmm(dz, weight) if ctx.needs_input_grad[0] else None
        dw = torch.bmm(dz.transpose(1, 2), x) if ctx.needs_input_grad[1] else None
        return dx, dw, dz.sum(1) if ctx.needs_input_grad[2] else None


def _layers_of(model) -> tuple[list[tuple[str, nn.Linear]], list[nn.Module]]:
    """A solo MLP's (name, Linear) layers and the activation module after each hidden one."""
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"members must be nn.Sequential MLPs; got {type(model).__name__}")
    linears, acts = [], []
    for name, module in model.named_children():
        if isinstance(module, nn.Linear) and len(linears) == len(acts):
            if module.bias is None:
                raise ValueError(f"layer {name!r} has no bias; the ensemble needs biases")
            linears.append((name, module))
        elif activation_kind(module)[0] and len(linears) == len(acts) + 1:
            acts.append(module)
        else:
            raise ValueError(
                f"module {name!r} ({type(module).__name__}) breaks the pattern the ensemble "
                "runs: Linear, activation module, ..., Linear (no norms, no output activation)"
            )
    if not linears or len(acts) != len(linears) - 1:
        raise ValueError(f"{type(model).__name__} must end with a Linear layer: {model}")
    return linears, acts


def _signature(model) -> list[tuple]:
    linears, acts = _layers_of(model)
    p = linears[0][1].weight
    return [(n, tuple(m.weight.shape), p.dtype, p.device) for n, m in linears] + [
        repr(a) for a in acts
    ]


class EnsembleMLP(nn.Module):
    """M MLPs of one architecture as stacked weights (M, out, in) and biases (M, out).

    Args:
        models: the members' solo models, nn.Sequential of Linear layers with an
            activation module between them (gradprobe.lab.models.mlp without norm or
            output activation); their current weights are copied in.
    """

    def __init__(self, models: Sequence[nn.Sequential]) -> None:
        super().__init__()
        models = list(models)
        if not models:
            raise ValueError("an ensemble needs at least one model")
        first = _signature(models[0])
        for i, m in enumerate(models[1:], start=1):
            if _signature(m) != first:
                raise ValueError(f"model {i} differs from model 0: {_signature(m)} vs {first}")
        linears, acts = _layers_of(models[0])
        self.names = [name for name, _ in linears]
        per_model = [_layers_of(m)[0] for m in models]
        with torch.no_grad():
            stack = [[layers[i][1] for layers in per_model] for i in range(len(linears))]
            self.weights = nn.ParameterList([torch.stack([m.weight for m in s]) for s in stack])
            self.biases = nn.ParameterList([torch.stack([m.bias for m in s]) for s in stack])
        self.activations = nn.ModuleList(acts)
        self.kinds = [activation_kind(a)[1] for a in acts] + [None]
        names = {i: type(a).__name__ for i, a in enumerate(acts)}  # the solo probe's names
        self.layer_info = [describe(la, names.get(la.index), False) for la in discover(models[0])]

    @classmethod
    def from_seeds(cls, sizes, seeds, activation="sigmoid", init="nielsen") -> EnsembleMLP:
        """Members gradprobe.lab.models.mlp(sizes, activation, init, generator=seeded)."""
        from gradprobe.lab.models import mlp

        gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        return cls([mlp(sizes, activation, init, generator=g) for g in gens])

    @property
    def members(self) -> int:
        return self.weights[0].shape[0]

    @property
    def sizes(self) -> list[int]:
        return [self.weights[0].shape[2]] + [w.shape[1] for w in self.weights]

    @property
    def device(self) -> torch.device:
        return self.weights[0].device

    @property
    def dtype(self) -> torch.dtype:
        return self.weights[0].dtype

    def forward_with_activations(self, x: torch.Tensor) -> tuple[torch.Tensor, list]:
        """Logits (M, B, n_out) of inputs x (M, B, n_in), and per layer what the solo
        probe reads as its activation: phi(z) after hidden layers, z for the last."""
        acts = []
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = _BatchedLinear.apply(x, w, b)  # (M, B, out)
            if i < len(self.activations):
                x = self.activations[i](x)
            acts.append(x)
        return x, acts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (M, B, n_out) for inputs of shape (M, B, n_in)."""
        return self.forward_with_activations(x)[0]

    def param_groups(self, weight_decay: float) -> list[dict]:
        """Weights decayed by weight_decay, biases not (gradprobe.lab.optim.param_groups)."""
        return [
            {"params": list(self.weights), "weight_decay": weight_decay},
            {"params": list(self.biases), "weight_decay": 0.0},
        ]

    def probe(self, sinks, every, detail_every, flush_every, weight_change) -> EnsembleProbe:
        """An EnsembleProbe over this ensemble's parameters, one sink per member."""
        return EnsembleProbe(
            list(self.weights), list(self.biases), self.kinds, self.layer_info, sinks,
            every=every, detail_every=detail_every, flush_every=flush_every,
            weight_change=weight_change,
        )  # fmt: skip

    def member_state_dicts(self) -> list[dict[str, torch.Tensor]]:
        """Member i's weights as a state_dict of its solo model ("fc1.weight", ...)."""
        out = []
        for m in range(self.members):
            sd = {}
            for name, w, b in zip(self.names, self.weights, self.biases):
                sd[f"{name}.weight"], sd[f"{name}.bias"] = (
                    w[m].detach().clone(),
                    b[m].detach().clone(),
                )
            out.append(sd)
        return out

    def load_into(self, models: Sequence[nn.Module]) -> None:
        """Copy each member's weights into its solo model."""
        if len(models) != self.members:
            raise ValueError(f"{len(models)} models given for {self.members} members")
        for model, sd in zip(models, self.member_state_dicts()):
            model.load_state_dict(sd)

    def __repr__(self) -> str:
        acts = ", ".join(sorted({type(a).__name__ for a in self.activations})) or "none"
        return f"EnsembleMLP({self.members} members, sizes {self.sizes}, activation {acts})"


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
    detail_every: int = 10,
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
