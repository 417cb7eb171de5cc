"""Forward side: which tensor is each layer's activation, and its statistics per pass.

Forward hooks only note (layer, tensor, version); the statistics are computed once per
forward pass (at the end of the model's forward, or at the step) for all layers together,
grouping same-shaped activations so 64 layers cost one set of kernels, not 64, and
writing every layer's results into the state with two indexed ops.
"""

from __future__ import annotations

import warnings

import torch

from gradprobe.probe.activations import Follower
from gradprobe.probe.layers import Layer
from gradprobe.stats import N_SLOTS, SLOT, Workspace, activation_stats
from gradprobe.stats.activation import COLUMNS, activation_moments
from gradprobe.stats.tensor_stats import STACK_BELOW, on

_A0 = SLOT[COLUMNS[0]]
_N_SUMMED = len(COLUMNS) - 1  # every column but the last (a minimum) is summed
_MIN_SLOT = SLOT[COLUMNS[-1]]
# the rows of activation_moments
_CHEAP_SLOTS = ("a_count", "a_sum", "a_sumsq")
assert [SLOT[c] for c in COLUMNS] == list(range(_A0, _A0 + len(COLUMNS))), "slots out of order"


class _Pending:
    """A layer's activation noted in a forward hook (slots: hooks run per layer per pass)."""

    __slots__ = ("layer", "tensor", "version", "kind")

    def __init__(self, layer: Layer, tensor: torch.Tensor, kind: str | None = None) -> None:
        self.layer, self.tensor, self.version, self.kind = layer, tensor, tensor._version, kind


class ForwardCapture:
    """Collects layer activations during a forward pass and reduces them into a state."""

    def __init__(self, ws: Workspace) -> None:
        self._ws = ws
        self._pending: list[_Pending] = []
        # the last layer output noted and its position; a strong reference costs nothing
        # more (the pending list holds the tensor) and is cheaper than a weakref per layer
        self._last: tuple[torch.Tensor, int] | None = None
        self._feature_max: dict[int, torch.Tensor] = {}
        self._warned: set[int] = set()
        self._targets: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self.activation_names: dict[int, str] = {}

    def add(self, layer: Layer, out: torch.Tensor) -> None:
        """Note a layer's output (its activation unless an activation module follows)."""
        self._last = (out, len(self._pending))
        self._pending.append(_Pending(layer, out))

    def attribute(self, inp, out, kind: str | None, name: str) -> None:
        """An activation module ran; if its input is the last layer output, it is phi(z)."""
        if self._last is not None and self._last[0] is inp:
            self._set_activation(out, kind, name)

    def attribute_input(self, follower: Follower, x) -> None:
        """A layer's input x is phi(z) of follower.previous (activations.read_by_next_layer):
        when that layer's output is the last one noted, x replaces it (phi is elementwise:
        the shape is z's)."""
        if self._last is not None and self._pending[self._last[1]].layer is follower.previous:
            self._set_activation(x, follower.kind, follower.name)

    def _set_activation(self, a, kind: str | None, name: str) -> None:
        """The last noted layer output's activation is a (a tensor; anything else is left)."""
        if not isinstance(a, torch.Tensor):
            return
        entry = self._pending[self._last[1]]
        entry.tensor, entry.version, entry.kind = a, a._version, kind
        self.activation_names[entry.layer.index] = name
        self._last = None

    @property
    def has_pending(self) -> bool:
        return bool(self._pending)

    def _groups(self) -> list[tuple[tuple, list[_Pending]]]:
        """Pending activations grouped by (shape, dtype, device, unit axis, kind).

        A layer called twice may sit twice in a group: its rows are summed (index_add)
        and min-reduced like any other, so nothing needs splitting.
        """
        groups: dict[tuple, list[_Pending]] = {}
        for p in self._pending:
            t = p.tensor
            if t._version != p.version:
                self._warn_inplace(p.layer)
                continue
            shape, dtype = t.shape, t.dtype
            if not shape or not dtype.is_floating_point:
                continue
            key = (shape, dtype, t.device, p.layer.spec.feature_dim % len(shape), p.kind)
            groups.setdefault(key, []).append(p)
        return list(groups.items())

    def _routing(self, layers: tuple[int, ...], device) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat state indices of the summed block and of the minimum, per member row."""
        key = (layers, str(device))
        if key not in self._targets:
            rows = torch.tensor(layers, device=device).unsqueeze(1) * N_SLOTS
            summed = (rows + _A0 + torch.arange(_N_SUMMED, device=device)).reshape(-1)
            self._targets[key] = (summed, (rows + _MIN_SLOT).reshape(-1))
        return self._targets[key]

    def _reduce(self, groups) -> tuple[torch.Tensor, list[_Pending], list]:
        """(n_members, len(COLUMNS)) statistics, in detail; the members; ReLU maxima."""
        stats, members, maxima = [], [], []
        for key, group in groups:
            fd, kind = key[3], key[4]
            tensors = [m.tensor.detach() for m in group]
            x = torch.stack(tensors) if len(tensors) > 1 else tensors[0].unsqueeze(0)
            s, fmax = activation_stats(x, fd + 1, kind, self._ws)
            stats.append(s)
            members += group
            if fmax is not None:
                maxima.append((group, fmax))
        return torch.cat(stats), members, maxima

    def collect(self, state: torch.Tensor, detail: bool) -> None:
        """Reduce the pending activations into state (n_layers, N_SLOTS); clear them.

        Args:
            state: the step's state.
            detail: also count non-finite and saturated elements, dead units and find
                the smallest magnitude; count, sum and sum of squares are taken always,
                with no host read (a NaN or Inf makes the sums non-finite, so the step
                and layer where one appears are known without a count).
        """
        groups = self._groups()
        self._pending.clear()
        self._last = None
        if not groups:
            return
        if not detail:
            self._write_cheap(state, groups)
            return
        values, members, maxima = self._reduce(groups)
        for group, fmax in maxima:
            self._merge_feature_max(group, fmax)
        values = on(values, state.device)  # (n_members, len(COLUMNS))
        summed, minimum = self._routing(tuple(m.layer.index for m in members), state.device)
        flat = state.view(-1)
        flat.index_add_(0, summed, values[:, :_N_SUMMED].reshape(-1))
        flat.scatter_reduce_(0, minimum, values[:, -1], reduce="amin")

    def _write_cheap(self, state: torch.Tensor, groups) -> None:
        """Count, sum and sum of squares of every member: one index_add."""
        stacks, layers = [], []
        for _key, group in groups:
            if len(group) > 1 and group[0].tensor.numel() < STACK_BELOW:
                stacks.append(torch.stack([m.tensor for m in group]))
            else:  # large: reduced one by one, no copy
                stacks += [m.tensor.unsqueeze(0) for m in group]
            layers += [m.layer.index for m in group]
        cheap = on(activation_moments(stacks), state.device)  # (3, n_members)
        layers = tuple(layers)
        key = ("cheap", layers, str(state.device))
        if key not in self._targets:
            idx = torch.tensor(layers, device=state.device) * N_SLOTS
            slots = torch.tensor([SLOT[name] for name in _CHEAP_SLOTS], device=state.device)
            self._targets[key] = (slots.unsqueeze(1) + idx).reshape(-1)
        state.view(-1).index_add_(0, self._targets[key], cheap.reshape(-1))

    def _merge_feature_max(self, members: list[_Pending], fmax: torch.Tensor) -> None:
        for j, m in enumerate(members):
            prev = self._feature_max.get(m.layer.index)
            row = fmax[j]
            self._feature_max[m.layer.index] = row if prev is None else torch.maximum(prev, row)

    def take_feature_max(self) -> dict[int, torch.Tensor]:
        """Per ReLU layer, the max over the step's batch of each unit; resets."""
        out, self._feature_max = self._feature_max, {}
        return out

    def discard(self) -> None:
        """Forget pending activations (a pass that will not be recorded)."""
        self._pending.clear()
        self._last = None
        self._feature_max = {}

    def _warn_inplace(self, layer: Layer) -> None:
        if layer.index in self._warned:
            return
        self._warned.add(layer.index)
        warnings.warn(
            f"gradprobe: the output of layer {layer.name!r} ({layer.type}) was modified in "
            "place after its forward by an op the probe cannot see (e.g. F.relu(x, "
            "inplace=True) or x.mul_()); its activation statistics are left unrecorded "
            "rather than wrong. Use an nn activation module or an out-of-place op.",
            RuntimeWarning,
            stacklevel=2,
        )
