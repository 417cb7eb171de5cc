"""M MLPs of one architecture as one batched network: stacked weights, one product a layer.

Stacking M members' weights as (M, out, in) tensors makes each layer one batched product
(torch.baddbmm) for all members, so the per-step Python overhead is paid once for M
models (gradprobe.lab.ensemble trains them). Each member keeps its own weights, equal
within float32 rounding to its solo model's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from gradprobe.lab.ensemble_stats import EnsembleProbe
from gradprobe.probe.activations import activation_kind
from gradprobe.probe.layers import describe, discover

__all__ = ["EnsembleMLP"]


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
