"""The per-layer state: sufficient statistics in named slots, each with its reduction.

A state is a float64 tensor of shape (n_layers, N_SLOTS). Every slot is reduced by
sum, max or min, so states from micro-batches, steps or ranks merge exactly, and the
derived quantities (norms, means, fractions) are computed only at flush time on the host.
"""

from __future__ import annotations

import math

import torch

# (slot name, reduction). Sums of squares rather than norms: they add across shards.
SLOTS: tuple[tuple[str, str], ...] = (
    ("g_w_sumsq", "sum"),  # sum g^2 over weight-gradient elements
    ("g_w_abs_sum", "sum"),  # sum |g|                      (detail steps)
    ("g_w_abs_max", "max"),  # max |g|                      (detail steps)
    ("g_w_numel", "sum"),  # elements that had a gradient this step
    ("g_b_sumsq", "sum"),  # sum g^2 over bias-gradient elements
    ("g_b_numel", "sum"),
    ("g_nonfinite", "sum"),  # NaN/Inf elements in all gradients (detail steps)
    ("g_counted", "sum"),  # > 0 where the detail statistics above were computed
    ("delta_sumsq", "sum"),  # ||sum over batch of dC/dz||^2
    ("delta_n", "sum"),  # 1 where delta was measured
    ("w_sumsq", "sum"),  # ||W||^2 after the step       (detail steps)
    ("w_numel", "sum"),
    ("u_sumsq", "sum"),  # ||W_t - W_{t-1}||^2           (detail steps)
    ("u_abs_sum", "sum"),  # sum |W_t - W_{t-1}|
    ("u_numel", "sum"),
    # activations: the summed block first, in activation_stats' column order
    ("a_count", "sum"),  # activation elements seen
    ("a_sum", "sum"),
    ("a_sumsq", "sum"),
    ("a_nonfinite", "sum"),  # (detail steps, as are the slots below)
    ("a_sat", "sum"),  # saturated elements (sigmoid/tanh layers only)
    ("a_sat_count", "sum"),  # elements eligible for saturation
    ("a_counted", "sum"),  # > 0 where the detail statistics were computed
    ("a_abs_min_nonzero", "min"),
    ("a_dead", "sum"),  # ReLU units at zero over the whole batch
    ("a_units", "sum"),  # ReLU units eligible
)

SLOT = {name: i for i, (name, _) in enumerate(SLOTS)}
N_SLOTS = len(SLOTS)
REDUCTIONS = tuple(red for _, red in SLOTS)

_INIT = {"sum": 0.0, "max": -math.inf, "min": math.inf}


def init_row(device: torch.device | str = "cpu") -> torch.Tensor:
    """The identity of every slot's reduction, shape (N_SLOTS,) float64."""
    return torch.tensor([_INIT[r] for r in REDUCTIONS], dtype=torch.float64, device=device)


def new_state(n_layers: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """An empty state of shape (n_layers, N_SLOTS)."""
    return init_row(device).repeat(n_layers, 1)


def _masks(device: torch.device) -> dict[str, torch.Tensor]:
    return {
        red: torch.tensor([r == red for r in REDUCTIONS], device=device)
        for red in ("sum", "max", "min")
    }


def merge(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Merge two states of the same shape (..., N_SLOTS) slot by slot."""
    m = _masks(a.device)
    out = torch.where(m["sum"], a + b, a)
    out = torch.where(m["max"], torch.maximum(a, b), out)
    return torch.where(m["min"], torch.minimum(a, b), out)


def all_reduce(state: torch.Tensor, group=None) -> torch.Tensor:
    """All-reduce a state across the ranks of a torch.distributed group, in place.

    Sum slots are summed and max/min slots take the max/min; min is sent as a max of the
    negation so the whole state needs two collectives, not three.
    """
    import torch.distributed as dist

    m = _masks(state.device)
    summed = torch.where(m["sum"], state, torch.zeros_like(state))
    # max of -x is -min x: both extremal kinds travel in one MAX collective
    extremal = torch.where(m["min"], -state, state)
    extremal = torch.where(m["sum"], torch.full_like(state, -math.inf), extremal)
    dist.all_reduce(summed, op=dist.ReduceOp.SUM, group=group)
    dist.all_reduce(extremal, op=dist.ReduceOp.MAX, group=group)
    state.copy_(torch.where(m["sum"], summed, torch.where(m["min"], -extremal, extremal)))
    return state
