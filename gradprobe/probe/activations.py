"""Activation modules: which parameter-free modules apply a nonlinearity, and of what kind.

When such a module is applied directly to a layer's output, the probe attributes its
output to that layer (a^l = phi(z^l)), so saturation and dead units can be counted. An
activation applied functionally (torch.sigmoid inside forward) cannot be seen; the layer's
own output is then its activation and saturated_frac / dead_frac are not measured.
"""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple

from torch import nn

from gradprobe.probe.layers import Layer

# kind: "sigmoid"/"tanh" saturate, "relu" can die, None is neither.
ACTIVATION_KINDS: dict[type, str | None] = {
    nn.Sigmoid: "sigmoid",
    nn.Tanh: "tanh",
    nn.ReLU: "relu",
    nn.ReLU6: "relu",
    nn.LeakyReLU: None,
    nn.ELU: None,
    nn.SELU: None,
    nn.CELU: None,
    nn.GELU: None,
    nn.SiLU: None,
    nn.Mish: None,
    nn.Softplus: None,
    nn.Softsign: None,
    nn.Hardtanh: None,
    nn.Hardsigmoid: None,
    nn.Hardswish: None,
    nn.LogSigmoid: None,
    nn.Tanhshrink: None,
}


def activation_kind(module: nn.Module) -> tuple[bool, str | None]:
    """(is an activation module, its kind) for a module without parameters of its own."""
    for cls in type(module).__mro__:
        if cls in ACTIVATION_KINDS:
            return True, ACTIVATION_KINDS[cls]
    return False, None


class Follower(NamedTuple):
    """A layer whose input is phi(z) of the layer before it: (that layer, phi's kind, name)."""

    previous: Layer
    kind: str | None
    name: str


def _param_free_activation(module: nn.Module) -> bool:
    return activation_kind(module)[0] and next(module.parameters(recurse=False), None) is None


def read_by_next_layer(model: nn.Module, layers: list[Layer]) -> tuple[dict[int, Follower], set]:
    """Activation modules whose output the next layer's own forward hook can read.

    In an nn.Sequential (its own forward) that runs [layer A, activation, layer B], B's
    input is exactly phi(z_A): B's forward hook can take it as A's activation, and the
    activation module needs no hook of its own. A hooked module leaves nn.Module's fast
    call path (~1-2 us a call on this CPU: the no-op hooks row of benchmarks/overhead.py
    reads ~1.02-1.05x on a 256-layer MLP of width 32 with 511 hooked modules). An activation
    module that is used anywhere else (its instance appears elsewhere in the model), or a
    layer B that follows different layers in different places, keeps the hook.

    Returns:
        followers: layer B's index -> Follower(A, kind, name).
        covered: ids of the activation modules that need no hook.
    """
    by_module = {id(layer.module): layer for layer in layers}
    triples = []
    for parent in model.modules():
        if (
            not isinstance(parent, nn.Sequential)
            or type(parent).forward is not nn.Sequential.forward
        ):
            continue
        kids = list(parent)
        for a, act, b in zip(kids, kids[1:], kids[2:]):
            if id(a) in by_module and id(b) in by_module and _param_free_activation(act):
                triples.append((by_module[id(a)], act, by_module[id(b)]))
    previous: dict[int, set] = {}
    for a, act, b in triples:
        previous.setdefault(b.index, set()).add((a.index, id(act)))
    triples = [t for t in triples if len(previous[t[2].index]) == 1]
    occurrences = Counter(id(m) for _, m in model.named_modules(remove_duplicate=False))
    uses = Counter(id(act) for _, act, _ in triples)
    covered = {key for key, n in uses.items() if n == occurrences[key]}
    followers = {}
    for a, act, b in triples:
        if id(act) in covered:
            followers[b.index] = Follower(a, activation_kind(act)[1], type(act).__name__)
    return followers, covered
