"""Step side: gradient, delta, weight and update statistics of all layers, fused.

Runs once per recorded step, after the backward: gradients are reduced at the optimizer's
pre-step hook (or at probe.step(), or after a step that takes a closure) and written into
the state at its post-step hook. They are thus read after gradient accumulation, AMP
unscaling and clipping: the figures the optimizer uses (DESIGN.md).

Every recorded step measures sums of squares, one pass and no host read: a NaN or Inf
makes its sum non-finite, so the step and layer where one appears are known; detail steps
add what needs more passes over parameter-sized memory: the exact count of non-finite
elements, |g| mean and max, ||W|| and the update W_t - W_{t-1} (BENCHMARKS.md, "The
per-step set").
"""

from __future__ import annotations

import torch

from gradprobe.probe.layers import Layer
from gradprobe.probe.step_stats_plan import StepPlan
from gradprobe.stats import N_SLOTS, SLOT, Workspace, diff_stats, param_stats, sumsq
from gradprobe.stats.derivation import STEP_SLOT
from gradprobe.stats.tensor_stats import grouped_sumsq, on, plan_groups


class StepStats(StepPlan):
    """Per-step statistics over the parameters of a fixed list of layers.

    The layout (owners, distributed filter, routes into the state) is StepPlan's.
    """

    def __init__(self, layers: list[Layer], weight_change: bool, ws: Workspace) -> None:
        super().__init__(layers, ws)
        self._all_present = False  # the last measure() found every gradient present
        self.weight_change = weight_change
        self._prev: list[torch.Tensor] | None = None
        self._prev_valid = False  # _prev holds the weights from just before this step

    # -- gradients -------------------------------------------------------------------
    def measure(self, detail: bool) -> tuple | None:
        """Reduce the gradients as they are now; write nothing (see grads()).

        Called from the optimizer's pre-step hook, right after the backward, while the
        gradients are still in the CPU's caches: the optimizer step then streams
        parameters, gradients and momenta through them (on the 784-1000-750-500-10
        MLP the same kernels took 1.3 ms after the step; BENCHMARKS.md).

        Returns:
            (present, detail, values, plan), or None when no parameter has a gradient.
        """
        all_grads = self._grads_now()
        present = tuple(g is not None for g in all_grads)
        self._all_present = all(present)
        grads = all_grads if self._all_present else [g for g in all_grads if g is not None]
        if not grads:
            return None
        if detail:
            return present, True, param_stats(grads, self._ws), None
        plan = self._cache.get(("groups", present))
        if plan is None:
            plan = self._cache["groups", present] = plan_groups(grads)
        return present, False, grouped_sumsq(grads, plan), plan

    def grads(
        self, state: torch.Tensor, step_state: torch.Tensor, detail: bool, measured=None
    ) -> None:
        """Gradient slots of state and the global gradient norm of step_state.

        Every recorded step takes sums of squares (no host read; a non-finite sum shows
        the step and layer where a NaN or Inf appeared); detail steps add |g| sum and
        max and the count of non-finite elements.

        Args:
            state, step_state: the step's rows.
            detail: measure the detail tier.
            measured: what measure(detail) returned earlier in the step; None measures
                the gradients now.
        """
        if measured is None or measured[1] != detail:
            measured = self.measure(detail)
        if measured is None:
            return
        present, detail, values, plan = measured
        values = on(values, state.device)
        if detail:
            self._write_detail(state, step_state, present, values)
        else:
            self._write_cheap(state, step_state, present, values, plan)

    def _write_cheap(self, state, step_state, present, values, plan) -> None:
        """Cheap steps: sums of squares (values, in plan order) and element counts."""
        routes = self._cheap_routes(present, plan, state.device)
        sources, targets, consts, global_numel, global_at = routes
        state.view(-1).index_add_(0, targets, torch.cat([values[sources], consts]))
        step_state.index_add_(0, global_at, torch.cat([values.sum().reshape(1), global_numel]))

    def _write_detail(self, state, step_state, present, stats) -> None:
        """Detail steps: |g| sum and max and non-finite counts too; stats (n, 4)."""
        sources, targets, max_rows, max_targets, numel = self._grad_routes(present, state.device)
        values = torch.stack(
            [stats[:, 0], stats[:, 1], stats[:, 3], numel, torch.ones_like(numel)], dim=1
        )
        flat = state.view(-1)
        flat.index_add_(0, targets, values.view(-1)[sources])
        flat.scatter_reduce_(0, max_targets, stats[max_rows, 2], reduce="amax")
        step_state[STEP_SLOT["global_sumsq"]] += stats[:, 0].sum()
        step_state[STEP_SLOT["global_numel"]] += numel.sum()

    # -- deltas ----------------------------------------------------------------------
    def deltas(
        self,
        state: torch.Tensor,
        hooked: dict[int, torch.Tensor],
        mode: str,
        ran: set[int],
        unscale: torch.Tensor | float | None = None,
    ) -> None:
        """delta_norm slots: from the bias gradient where it equals delta, else the hooks.

        Call after grads(): for a layer whose output is `... + bias`, ||delta||^2 is the
        bias gradient's sum of squares already in g_b_sumsq, copied over with no new pass.
        The identity is used only for layers whose own forward ran this step: a parent
        that uses a child's parameters functionally (MultiheadAttention's out_proj) may
        use the bias in ways the identity does not cover.

        Args:
            unscale: None, or 1 / the loss scale the hooked gradients carry (a float or
                a float64 0-d tensor on state's device); bias gradients are unscaled
                already.
        """
        flat = state.view(-1)
        if hooked:
            at = self._slot_index(tuple(hooked), ("delta_sumsq", "delta_n"), state.device)
            values = on(sumsq(list(hooked.values())), state.device)
            if unscale is not None:
                values = values * (unscale * unscale)
            flat.index_copy_(0, at[0], values)
            flat.index_fill_(0, at[1], 1.0)
        if mode != "auto":
            return
        if self._all_present and ran.issuperset(self._from_bias_idx):
            layers = self._from_bias_all
        else:
            layers = tuple(
                layer.index
                for layer in self._from_bias
                if layer.index in ran and layer.biases[0].grad is not None
            )
        if layers:
            slots = ("g_b_sumsq", "delta_sumsq", "delta_n")
            src, dst, n_at = self._slot_index(layers, slots, state.device)
            flat.index_copy_(0, dst, flat[src])
            flat.index_fill_(0, n_at, 1.0)

    # -- dead units ------------------------------------------------------------------
    @staticmethod
    def dead(state: torch.Tensor, feature_max: dict[int, torch.Tensor]) -> None:
        """a_dead / a_units: units whose activation was <= 0 for every input of the step."""
        by_width: dict[tuple, list[int]] = {}
        for index, v in feature_max.items():
            by_width.setdefault((v.shape[0], v.device), []).append(index)
        for indices in by_width.values():
            rows = torch.stack([feature_max[i] for i in indices])  # (G, F)
            idx = torch.tensor(indices, device=state.device)
            dead = (rows <= 0).sum(1).double().to(state.device)
            state[:, SLOT["a_dead"]].index_copy_(0, idx, dead)
            state[:, SLOT["a_units"]].index_fill_(0, idx, float(rows.shape[1]))

    # -- weights and updates ---------------------------------------------------------
    def snapshot(self) -> None:
        """Copy the weights, so the next weights() can measure W_t - W_{t-1}."""
        if not self.weight_change or not self.weights:
            return
        now = [w.detach() for w in self._weights_now()]
        if self._prev is None:
            self._prev = [t.clone() for t in now]
        else:
            torch._foreach_copy_(self._prev, now)
        self._prev_valid = True

    def weights_and_update(self, state: torch.Tensor) -> None:
        """weight_norm slots, and update slots when a snapshot was taken before the step."""
        if not self.weights:
            return
        rows, lay, numel = self._weight_routes(state.device)
        weights = self._weights_now()
        per_weight = [on(sumsq(weights), state.device), numel]
        slots = ["w_sumsq", "w_numel"]
        if self.weight_change and self._prev_valid:
            d = on(diff_stats(self._prev, weights, self._ws), state.device)
            per_weight += [d[:, 0], d[:, 1], numel]
            slots += ["u_sumsq", "u_abs_sum", "u_numel"]
            self._prev_valid = False  # _prev now holds W_{t-1} - W_t
        values = torch.stack(per_weight, dim=1)[rows]  # (n_owners, n_slots)
        targets = lay.unsqueeze(1) * N_SLOTS + torch.tensor([SLOT[s] for s in slots])
        state.view(-1).index_add_(0, targets.reshape(-1).to(state.device), values.reshape(-1))

    @property
    def snapshot_bytes(self) -> int:
        return sum(w.numel() * w.element_size() for w in self.weights)
