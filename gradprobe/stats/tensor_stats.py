"""Per-tensor sufficient statistics, batched so that many tensors cost few kernels.

Two costs dominate on a CPU: the dispatch of each op (~4 us) and each pass over a
parameter-sized tensor (~0.1-0.3 ms for the 1.9M weights of a 784-1000-750-500-10 MLP,
benchmarks/overhead.py). Small tensors therefore go through fused multi-tensor ops or are
stacked; large ones are reduced one by one with the fewest passes. Everything stays on the
tensors' device: no host synchronisation happens here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from gradprobe.stats.workspace import Workspace

# At or above this many elements a tensor is reduced alone (the kernel dominates its
# dispatch); below it, tensors of one size are stacked or go through a _foreach op.
STACK_BELOW = 1 << 16

# float32 holds every integer up to 2**24 exactly (24-bit significand, IEEE 754), so
# element counts of longer rows are summed in float64.
EXACT_F32_COUNT = 1 << 24

_ONES: dict[tuple, torch.Tensor] = {}


def on(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """t on `device`; no op dispatched when it is there already (the common case)."""
    return t if t.device == device else t.to(device)


def _wide(t: torch.Tensor) -> torch.Tensor:
    """t in float32 or float64, so sums do not overflow half precision; detached."""
    if t.requires_grad:
        t = t.detach()
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def _flat(t: torch.Tensor) -> torch.Tensor:
    """A 1-D float32/float64 view (or copy) of t."""
    return _wide(t).reshape(-1)


def sumsq_grouped(tensors: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[int]]:
    """Sum of squares of each tensor, in the order of `order` (grouped by shape).

    Small tensors of one shape are stacked and reduced in one kernel (on CPU
    `_foreach_norm` is a loop of per-tensor norms: 1.6 us each, 0.2 ms for 128 tensors);
    large ones use a BLAS dot product (one pass, twice as fast as a norm kernel on CPU).
    Callers that route values by index use `order` directly and skip the reordering
    that `sumsq` does.

    Returns:
        values: float64 tensor of shape (len(tensors),); values[k] belongs to
            tensors[order[k]].
        order: the input index of each value.
    """
    groups: dict[tuple, list[int]] = {}
    for i, t in enumerate(tensors):
        key = (t.shape, t.dtype, t.device) if t.numel() < STACK_BELOW else ("single", i)
        groups.setdefault(key, []).append(i)
    parts, order = [], []
    for idx in groups.values():
        order += idx
        if len(idx) == 1:
            f = _flat(tensors[idx[0]])
            parts.append(torch.dot(f, f).reshape(1))
        else:
            x = _wide(torch.stack([tensors[i] for i in idx])).reshape(len(idx), -1)
            parts.append(torch.linalg.vector_norm(x, dim=1).square())
    if len(parts) == 1:
        return parts[0].double(), order
    dtype = torch.float64 if any(p.dtype == torch.float64 for p in parts) else parts[0].dtype
    return torch.cat([p.to(dtype) for p in parts]).double(), order


def sumsq(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum of squares of each tensor, shape (len(tensors),) float64, input order."""
    values, order = sumsq_grouped(tensors)
    if order == list(range(len(order))):
        return values
    where = torch.tensor(order, device=values.device)
    return torch.empty_like(values).index_copy_(0, where, values)


def row_abs(x: torch.Tensor, ws: Workspace | None) -> torch.Tensor:
    """|x| written into scratch memory when a workspace is given."""
    if ws is None:
        return x.abs()
    return torch.abs(x, out=ws.take(tuple(x.shape), x.dtype, x.device))


def row_nonfinite(abs_x: torch.Tensor) -> torch.Tensor:
    """Count NaN/Inf per row of |x| (G, n); overwrites abs_x.

    |x| * 0 is 0 for finite elements and NaN for NaN and Inf; mapping NaN to 1 and
    summing counts them with float kernels, several times faster on CPU than isfinite()
    followed by a boolean sum.
    """
    return abs_x.mul_(0).nan_to_num_(nan=1.0).sum(1)


def row_finite(x: torch.Tensor, ws: Workspace | None) -> torch.Tensor:
    """Count of finite elements in each row of x (G, n); float64 of shape (G,).

    1 + 0 * x is 1 where x is finite and NaN where it is NaN or +-inf (0 * inf is NaN,
    IEEE 754), and nansum counts the ones: one elementwise pass into scratch memory and
    one reduction, with no host read. On this CPU it costs ~2 dot products over the same
    memory, against ~25 for (~isfinite(x)).sum() (python benchmarks/count_kernels.py;
    BENCHMARKS.md); in a training loop, where the scratch memory is cold, it cost more
    than the sum of squares itself, which is why only detail steps count.
    """
    dtype = x.dtype if x.shape[1] < EXACT_F32_COUNT else torch.float64
    key = (dtype, x.device)
    one = _ONES.get(key)
    if one is None:
        one = _ONES[key] = torch.ones((), dtype=dtype, device=x.device)
    out = None if ws is None else ws.take(tuple(x.shape), dtype, x.device)
    return torch.nansum(torch.add(one, x, alpha=0, out=out), dim=1).double()


def plan_groups(tensors: Sequence[torch.Tensor]) -> list[list[int]]:
    """Indices batched together: same-shaped small tensors, each large tensor alone.

    A plan depends only on shapes, dtypes and devices, so a caller may keep it for as
    long as those stay the same (the gradients of one model, step after step).
    """
    groups: dict[tuple, list[int]] = {}
    for i, t in enumerate(tensors):
        key = (t.shape, t.dtype, t.device) if t.numel() < STACK_BELOW else ("single", i)
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def stacked_rows(tensors: Sequence[torch.Tensor], idx: list[int]) -> torch.Tensor:
    """The tensors at idx (one shape) as rows of a (len(idx), n) float32/float64 matrix."""
    if len(idx) == 1:
        return _flat(tensors[idx[0]]).unsqueeze(0)
    return _wide(torch.stack([tensors[i] for i in idx])).reshape(len(idx), -1)


def grouped_sumsq(tensors: Sequence[torch.Tensor], groups: list[list[int]]) -> torch.Tensor:
    """Sum of squares of each tensor, batched by a plan: the cheap tier of the gradients.

    One pass over each tensor and no host read. A NaN or Inf element makes its tensor's
    sum non-finite, so the sums alone show on which step and in which tensor a
    non-finite value appeared; the count of such elements is left to the detail tier
    (param_stats), where it costs no extra pass over scratch memory.

    Args:
        tensors: the tensors, e.g. parameter gradients.
        groups: plan_groups(tensors), possibly cached.

    Returns:
        float64 tensor of shape (len(tensors),), entry k for the k-th index of the
        concatenated groups.
    """
    squares = []
    for idx in groups:
        if len(idx) == 1:
            flat = _flat(tensors[idx[0]])
            squares.append(torch.dot(flat, flat))  # 0-d: joined below with no reshape
        else:
            squares.append(row_sumsq(stacked_rows(tensors, idx)))
    return joined(squares)


def joined(parts: Sequence[torch.Tensor]) -> torch.Tensor:
    """0-d and 1-d tensors end to end as one float64 vector, in one or two ops.

    The cheap tier runs at every step, where each op's ~4 us of dispatch counts (the
    784-1000-750-500-10 MLP's 8 gradients and 4 activations are 12 singles).
    """
    if all(p.dim() == 0 for p in parts):
        return torch.stack(list(parts)).double()
    if len(parts) == 1:
        return parts[0].double()
    return torch.cat([p.reshape(1) if p.dim() == 0 else p for p in parts]).double()


def row_sumsq(x: torch.Tensor) -> torch.Tensor:
    """Sum of squares of each row of x (G, n): a BLAS dot for one row, else a norm."""
    if x.shape[0] == 1:
        return torch.dot(x[0], x[0]).reshape(1)
    return torch.linalg.vector_norm(x, dim=1).square()


def _rows_stats(x: torch.Tensor, ws: Workspace | None) -> torch.Tensor:
    """Rows x (G, n) -> (G, 4): sumsq, abs_sum, abs_max, nonfinite (float64).

    A NaN/Inf makes the sum of squares and of |x| NaN/Inf and the max |x| NaN/Inf: the
    count column says how many there were.
    """
    a = row_abs(x, ws)
    cols = [row_sumsq(x), a.sum(1), a.amax(1)]
    cols.append(row_finite(x, ws).neg_().add_(x.shape[1]))  # reuses ws: after |x|'s last use
    return torch.stack([c.double() for c in cols], dim=1)


def _in_order(n: int, groups: list[list[int]], results: list[torch.Tensor]) -> torch.Tensor:
    """Rows of per-group results put back in input order, shape (n, k)."""
    order = [i for g in groups for i in g]
    stacked = torch.cat(results)
    if order == list(range(n)):
        return stacked
    inverse = torch.empty(n, dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(n)
    return stacked[inverse.to(stacked.device)]


def param_stats(tensors: Sequence[torch.Tensor], ws: Workspace | None = None) -> torch.Tensor:
    """Sufficient statistics of each tensor in a list.

    Args:
        tensors: non-empty tensors on one device (typically parameter gradients).
        ws: scratch memory reused across calls (recommended in a loop).

    Returns:
        float64 tensor of shape (len(tensors), 4): sum of squares, sum of |x|, max |x|
        and the count of NaN/Inf elements, in that column order.
    """
    if not tensors:
        raise ValueError("param_stats() needs at least one tensor")
    groups = plan_groups(tensors)
    results = [_rows_stats(stacked_rows(tensors, g), ws) for g in groups]
    return _in_order(len(tensors), groups, results)


def diff_stats(
    prev: Sequence[torch.Tensor], now: Sequence[torch.Tensor], ws: Workspace | None = None
) -> torch.Tensor:
    """Statistics of now - prev per tensor; overwrites prev with prev - now.

    Returns:
        float64 tensor of shape (len(now), 2): sum of squares and sum of |now - prev|.
    """
    torch._foreach_sub_(list(prev), [t.detach() for t in now])
    groups = plan_groups(prev)
    results = []
    for g in groups:
        rows = stacked_rows(prev, g)
        sq = row_sumsq(rows).double()
        results.append(torch.stack([sq, row_abs(rows, ws).sum(1).double()], dim=1))
    return _in_order(len(prev), groups, results)
