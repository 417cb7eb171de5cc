"""Where each parameter's statistics go in the state: owners, local shards, flat routes.

StepStats writes per-tensor values (one row per parameter) into per-layer slots of the
step's state (L, N_SLOTS) with one index_add_ / index_copy_ each. This module holds that
layout: which layer owns each parameter (a parameter shared by layers counts once per
owner), which parameters this rank measures under torch.distributed, and the flat state
indices of every route, built once per pattern of present gradients and device, cached.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from gradprobe.probe.distributed_group import is_dtensor, local
from gradprobe.probe.layers import Layer
from gradprobe.stats import N_SLOTS, SLOT, Workspace
from gradprobe.stats.derivation import STEP_SLOT

# Detail steps: per-tensor value columns routed into slots (column, weight slot, bias slot)
_COLUMNS = ("sumsq", "abs_sum", "nonfinite", "numel", "counted")
_ROUTES = (
    ("sumsq", "g_w_sumsq", "g_b_sumsq"),
    ("numel", "g_w_numel", "g_b_numel"),
    ("abs_sum", "g_w_abs_sum", None),
    ("nonfinite", "g_nonfinite", "g_nonfinite"),
    ("counted", "g_counted", "g_counted"),
)


def _unique(params: list[torch.nn.Parameter]) -> list[torch.nn.Parameter]:
    seen: dict[int, torch.nn.Parameter] = {}
    for p in params:
        seen.setdefault(id(p), p)
    return list(seen.values())


class StepPlan:
    """Ownership of the parameters of a fixed list of layers and the cached state routes."""

    def __init__(self, layers: list[Layer], ws: Workspace) -> None:
        self._layers = layers
        self._ws = ws
        self.params = _unique([p for layer in layers for p in layer.weights + layer.biases])
        pos = {id(p): i for i, p in enumerate(self.params)}
        # (param position, layer index, is bias) for every parameter of every layer
        self._owners = [
            (pos[id(p)], layer.index, is_bias)
            for layer in layers
            for is_bias, group in ((False, layer.weights), (True, layer.biases))
            for p in group
        ]
        self.weights = _unique([p for layer in layers for p in layer.weights])
        wpos = {id(w): i for i, w in enumerate(self.weights)}
        self._weight_owners = [
            (wpos[id(p)], layer.index) for layer in layers for p in layer.weights
        ]
        self._from_bias = [layer for layer in layers if layer.delta_from_bias]
        # deltas(): the usual step (every such layer ran, every gradient present) takes
        # a cached tuple instead of ~1 us of Python per layer
        self._from_bias_idx = frozenset(layer.index for layer in self._from_bias)
        self._from_bias_all = tuple(layer.index for layer in self._from_bias)
        self._numel = [float(p.numel()) for p in self.params]  # this rank's elements
        self._keep: list[bool] | None = None  # None: every parameter counts (one process)
        self._sharded = False  # some parameter is a DTensor: read local shards
        self._cache: dict[tuple, tuple[torch.Tensor, ...]] = {}

    def distribute(self, contributes: Callable[[torch.Tensor], bool]) -> None:
        """Under torch.distributed: measure only what this rank adds to the all-reduce.

        A parameter this rank does not add (a replicated one off rank 0, an empty shard)
        is left out of every sum; DTensors are read through their local shard, and element
        counts are the shard's (gradprobe.probe.distributed).
        """
        self._keep = [contributes(p) for p in self.params]
        self._sharded = any(is_dtensor(p) for p in self.params)
        self._numel = [float(local(p).numel()) for p in self.params]
        kept = {id(p) for p, keep in zip(self.params, self._keep) if keep}
        self.weights = [w for w in self.weights if id(w) in kept]
        wpos = {id(w): i for i, w in enumerate(self.weights)}
        self._weight_owners = [
            (wpos[id(p)], layer.index)
            for layer in self._layers
            for p in layer.weights
            if id(p) in wpos
        ]
        self._cache.clear()

    def _grads_now(self) -> list[torch.Tensor | None]:
        """Each parameter's gradient (its local shard), None where not measured here."""
        grads = [p.grad for p in self.params]
        if self._keep is None:
            return grads
        return [local(g) if g is not None and k else None for g, k in zip(grads, self._keep)]

    def _weights_now(self) -> list[torch.Tensor]:
        """The weights measured here (local shards of DTensors), detached."""
        return [local(w.detach()) for w in self.weights] if self._sharded else self.weights

    # -- routes ----------------------------------------------------------------------
    def _grad_routes(self, present: tuple[bool, ...], device) -> tuple:
        """Flat state indices for detail steps' per-tensor values (cached per pattern)."""
        key = ("grad", present, str(device))
        if key not in self._cache:
            row_of: dict[int, int] = {}
            for p, has in enumerate(present):
                if has:
                    row_of[p] = len(row_of)
            sources, targets, max_rows, max_targets = [], [], [], []
            for p, layer, is_bias in self._owners:
                if p not in row_of:
                    continue
                for column, w_slot, b_slot in _ROUTES:
                    slot = b_slot if is_bias else w_slot
                    if slot is not None:
                        sources.append(row_of[p] * len(_COLUMNS) + _COLUMNS.index(column))
                        targets.append(layer * N_SLOTS + SLOT[slot])
                if not is_bias:
                    max_rows.append(row_of[p])
                    max_targets.append(layer * N_SLOTS + SLOT["g_w_abs_max"])
            numel = [self._numel[p] for p in row_of]

            def t(xs, dtype=torch.long):
                return torch.tensor(xs, dtype=dtype, device=device)

            self._cache[key] = (
                t(sources),
                t(targets),
                t(max_rows),
                t(max_targets),
                t(numel, torch.float64),
            )
        return self._cache[key]

    def _cheap_routes(self, present: tuple[bool, ...], plan: list[list[int]], device) -> tuple:
        """Flat state indices of each value of grouped_sumsq's (n,) result (cached)."""
        key = ("cheap", present, str(device))
        if key in self._cache:
            return self._cache[key]
        order = [i for idx in plan for i in idx]
        row_of = {p: k for k, p in enumerate(i for i, has in enumerate(present) if has)}
        column = {row: k for k, row in enumerate(order)}
        sources, targets, consts, const_targets = [], [], [], []
        for p, layer, is_bias in self._owners:
            if p not in row_of:
                continue
            base = layer * N_SLOTS
            sq_slot, n_slot = ("g_b_sumsq", "g_b_numel") if is_bias else ("g_w_sumsq", "g_w_numel")
            sources.append(column[row_of[p]])
            targets.append(base + SLOT[sq_slot])
            consts.append(self._numel[p])
            const_targets.append(base + SLOT[n_slot])

        def t(xs, dtype=torch.long):
            return torch.tensor(xs, dtype=dtype, device=device)

        numel = sum(self._numel[p] for p in row_of)
        self._cache[key] = (
            t(sources),
            t(targets + const_targets),
            t(consts, torch.float64),
            t([numel], torch.float64),
            t([STEP_SLOT["global_sumsq"], STEP_SLOT["global_numel"]]),
        )
        return self._cache[key]

    def _slot_index(self, layers: tuple[int, ...], slots: tuple[str, ...], device) -> tuple:
        """Flat state positions of each slot for the given layers (cached)."""
        key = ("slots", layers, slots, str(device))
        if key not in self._cache:
            idx = torch.tensor(layers, device=device) * N_SLOTS
            self._cache[key] = tuple(idx + SLOT[slot] for slot in slots)
        return self._cache[key]

    def _weight_routes(self, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        key = ("weights", str(device))
        if key not in self._cache:
            self._cache[key] = (
                torch.tensor([i for i, _ in self._weight_owners], device=device),
                torch.tensor([layer for _, layer in self._weight_owners], device=device),
                torch.tensor(
                    [float(w.numel()) for w in self._weights_now()],
                    dtype=torch.float64,
                    device=device,
                ),
            )
        return self._cache[key]

    def __repr__(self) -> str:
        shared = "" if self._keep is None else f", {sum(self._keep)} added on this rank"
        return (
            f"{type(self).__name__}({len(self._layers)} layers, {len(self.params)} parameters"
            f"{shared}, {len(self._cache)} cached routes)"
        )
