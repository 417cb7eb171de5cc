"""gradprobe.stats against direct torch computation, and its merge / all-reduce laws."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hypothesis import given, settings
from hypothesis import strategies as st

from gradprobe.stats import (
    N_SLOTS,
    SLOT,
    SLOTS,
    Workspace,
    activation_stats,
    all_reduce,
    derive,
    diff_stats,
    merge,
    new_state,
    param_stats,
)
from gradprobe.stats.activation import activation_moments
from gradprobe.stats.tensor_stats import STACK_BELOW, grouped_sumsq, joined, plan_groups


def _direct(t: torch.Tensor) -> list[float]:
    d = t.double()
    return [
        float(d.square().sum()),
        float(d.abs().sum()),
        float(d.abs().max()),
        float((~torch.isfinite(t)).sum()),
    ]


def test_param_stats_match_direct_for_mixed_sizes():
    g = torch.Generator().manual_seed(0)
    tensors = [
        torch.randn(30, 20, generator=g),
        torch.randn(20, generator=g),
        torch.randn(30, 20, generator=g),  # stacked with the first
        torch.randn(STACK_BELOW + 5, generator=g),  # reduced alone
        torch.randn(7, generator=g).to(torch.bfloat16),
    ]
    got = param_stats(tensors, Workspace()).numpy()
    want = np.array([_direct(t.float()) for t in tensors])
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_param_stats_count_nonfinite():
    t = torch.randn(100, 100)
    t[3, 4], t[5, 6], t[7, 8] = math.nan, math.inf, -math.inf
    small = torch.randn(10)
    small[0] = math.nan
    many = torch.randn(300, 300)  # reduced alone (not stacked): the other code path
    many.view(-1)[::1000] = math.nan  # 90 NaN
    got = param_stats([t, small, torch.ones(10), many]).numpy()
    assert got[:, 3].tolist() == [3.0, 1.0, 0.0, 90.0]
    # a tensor with NaN/Inf: sums and max are not finite, the count says how many
    assert not np.isfinite(got[[0, 1, 3], :3]).any() and np.isfinite(got[2, :3]).all()
    assert math.isclose(got[2, 0], 10.0, rel_tol=1e-6) and got[2, 1:3].tolist() == [10, 1]


def test_param_stats_huge_finite_values_are_not_nonfinite():
    """Exploded but finite gradients (|g| = 1e29, sums past 1e30) count no non-finite."""
    t = torch.full((50,), 1e29)
    got = param_stats([t, t.repeat(2000)]).numpy()
    assert got[:, 3].tolist() == [0.0, 0.0]
    np.testing.assert_allclose(got[:, 1], [50 * 1e29, 100000 * 1e29], rtol=1e-6)


def test_param_stats_rejects_empty():
    with pytest.raises(ValueError, match="at least one tensor"):
        param_stats([])


def test_diff_stats_is_exact_float32_difference():
    g = torch.Generator().manual_seed(1)
    now = [torch.randn(40, 30, generator=g), torch.randn(STACK_BELOW + 1, generator=g)]
    before = [t + 1e-3 * torch.randn(t.shape, generator=g) for t in now]
    prev = [t.clone() for t in before]
    got = diff_stats(prev, now, Workspace()).numpy()
    for i, (a, b) in enumerate(zip(now, before)):
        d = (a - b).double()  # the same float32 subtraction, then exact sums
        np.testing.assert_allclose(
            got[i], [float(d.square().sum()), float(d.abs().sum())], rtol=1e-6
        )


@pytest.mark.parametrize("kind", ["sigmoid", "tanh", "relu", None])
def test_activation_stats_group_matches_each_member(kind):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 16, 5, 4, generator=g) * 3  # (G, B, C, L), units on dim 2
    if kind == "sigmoid":
        x = torch.sigmoid(x)
    elif kind == "tanh":
        x = torch.tanh(x)
    elif kind == "relu":
        x = torch.relu(x - 2)
    x[1, 0, 0, 0] = 0.0
    stats, fmax = activation_stats(x, 2, kind, Workspace())
    cheap = activation_moments([x[:1], x[1:]])  # (3, 3): counts, sums, sums of squares
    for j in range(3):
        a = x[j].double()
        nz = a.abs()[a != 0]
        if kind == "tanh":
            sat = float((a.abs() > 0.97).sum())
        elif kind == "sigmoid":
            sat = float(((a - 0.5).abs() > 0.485).sum())
        else:
            sat = 0.0
        eligible = a.numel() if kind in ("tanh", "sigmoid") else 0
        # count, sum, sumsq, nonfinite, saturated, eligible, counted, min |a| > 0
        want = [a.numel(), a.sum(), a.square().sum(), 0, sat, eligible, 1, nz.min()]
        np.testing.assert_allclose(stats[j].numpy(), [float(w) for w in want], rtol=1e-5)
        np.testing.assert_allclose(cheap[:, j].numpy(), [float(w) for w in want[:3]], rtol=1e-5)
    if kind == "relu":
        np.testing.assert_array_equal(fmax.numpy(), x.amax(dim=(1, 3)).numpy())
    else:
        assert fmax is None


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=40),
    st.integers(1, 39),
)
def test_merge_of_parts_equals_whole(values, cut):
    """Slots merge exactly: sum / max / min of two halves give the whole's."""
    cut = min(cut, len(values))
    a, b = torch.tensor(values[:cut]), torch.tensor(values[cut:] or [0.0])

    def state_of(t):
        s = new_state(1)
        s[0, SLOT["a_sum"]] = t.double().sum()
        s[0, SLOT["g_w_abs_max"]] = t.double().abs().max()
        s[0, SLOT["a_abs_min_nonzero"]] = t.double().abs().min()
        return s

    whole = torch.cat([a, b])
    merged = merge(state_of(a), state_of(b))
    expected = state_of(whole)
    for name in ("a_sum", "g_w_abs_max", "a_abs_min_nonzero"):
        np.testing.assert_allclose(merged[0, SLOT[name]], expected[0, SLOT[name]], rtol=1e-9)


def test_merge_identity_is_new_state():
    s = torch.randn(3, N_SLOTS, dtype=torch.float64)
    assert torch.equal(merge(new_state(3), s), s)


def _all_reduce_worker(rank: int, world: int, port: int, out) -> None:
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        s = new_state(2)
        s[:, SLOT["a_sum"]] = torch.tensor([1.0, 2.0]) * (rank + 1)
        s[:, SLOT["g_w_abs_max"]] = torch.tensor([5.0, -1.0]) * (1 - 2 * rank)
        s[:, SLOT["a_abs_min_nonzero"]] = torch.tensor([0.5, 0.25]) * (rank + 1)
        all_reduce(s)
        out[rank] = s.clone()
    finally:
        dist.destroy_process_group()


def test_all_reduce_over_two_gloo_ranks():
    port = 29500 + os.getpid() % 1000
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_all_reduce_worker, args=(2, port, out), nprocs=2, join=True)
        results = [out[0], out[1]]
    for s in results:
        assert s[:, SLOT["a_sum"]].tolist() == [3.0, 6.0]
        assert s[:, SLOT["g_w_abs_max"]].tolist() == [5.0, 1.0]
        assert s[:, SLOT["a_abs_min_nonzero"]].tolist() == [0.5, 0.25]
    assert torch.equal(results[0], results[1])


def test_derive_from_hand_made_state():
    s = new_state(2).numpy()[None].copy()  # (1 step, 2 layers, N_SLOTS)
    s[0, 0, SLOT["g_w_sumsq"]], s[0, 0, SLOT["g_w_numel"]] = 9.0, 4
    s[0, 0, SLOT["g_w_abs_sum"]], s[0, 0, SLOT["g_counted"]] = 6.0, 1
    s[0, 0, SLOT["w_sumsq"]], s[0, 0, SLOT["w_numel"]] = 16.0, 4
    s[0, 0, SLOT["u_sumsq"]], s[0, 0, SLOT["u_numel"]] = 0.04, 4
    s[0, 0, SLOT["a_count"]], s[0, 0, SLOT["a_sum"]], s[0, 0, SLOT["a_sumsq"]] = 4, 2.0, 2.0
    s[0, 0, SLOT["a_sat"]], s[0, 0, SLOT["a_sat_count"]] = 1, 4
    q = derive(s)
    assert q["grad_norm"][0, 0] == 3.0 and q["grad_abs_mean"][0, 0] == 1.5
    np.testing.assert_allclose(q["update_ratio"][0, 0], 0.2 / 4.0)
    assert q["act_mean"][0, 0] == 0.5 and q["act_std"][0, 0] == math.sqrt(0.5 - 0.25)
    assert q["saturated_frac"][0, 0] == 0.25
    # layer 1 measured nothing: every quantity NaN, never 0
    assert all(math.isnan(v[0, 1]) for v in q.values())
    assert len(SLOTS) == N_SLOTS


def test_derive_nonfinite_counts_off_detail_steps():
    """Off detail steps a count is 0 when the sums prove every element finite, else NaN."""
    s = np.repeat(new_state(3).numpy()[None], 2, axis=0)  # (2 steps, 3 layers, N_SLOTS)
    s[:, :, SLOT["g_w_numel"]] = 10
    s[:, :, SLOT["a_count"]] = 10
    s[0, 1, SLOT["g_w_sumsq"]] = math.inf
    s[0, 2, SLOT["a_sum"]] = math.nan
    s[1, :, SLOT["g_counted"]] = 1
    s[1, :, SLOT["g_nonfinite"]] = [0, 3, 0]
    q = derive(s)
    np.testing.assert_array_equal(q["grad_nonfinite"], [[0, np.nan, 0], [0, 3, 0]])
    np.testing.assert_array_equal(q["act_nonfinite"][0], [0, 0, np.nan])
    assert np.isnan(q["grad_abs_mean"][0]).all()  # not counted: not measured
    # all_finite: from the sums where no count was taken, from the count where one was
    # (step 1, layer 1: a count of 3 with finite sums still says 0)
    np.testing.assert_array_equal(q["grad_all_finite"], [[1, 0, 1], [1, 0, 1]])
    np.testing.assert_array_equal(q["act_all_finite"], [[1, 1, 0], [1, 1, 1]])
    s[:, 0, SLOT["g_w_numel"]] = s[:, 0, SLOT["a_count"]] = 0  # layer 0: nothing measured
    q = derive(s)
    assert np.isnan(q["grad_all_finite"][:, 0]).all() and np.isnan(q["act_all_finite"][:, 0]).all()


def test_cheap_tier_sums_in_order_whatever_the_grouping():
    """grouped_sumsq and activation_moments against plain float64 sums, for singles (0-d
    results), stacked groups and a mix, in plan order; joined keeps the order."""
    g = torch.Generator().manual_seed(3)
    big = torch.randn(300, 300, generator=g)  # >= STACK_BELOW: alone
    assert big.numel() >= STACK_BELOW
    small = [torch.randn(4, 5, generator=g) for _ in range(3)]  # one stacked group
    odd = torch.randn(7, generator=g, dtype=torch.float64)  # alone, float64
    for tensors in ([big, odd], [big, *small, odd], small):
        plan = plan_groups(tensors)
        order = [i for idx in plan for i in idx]
        got = grouped_sumsq(tensors, plan)
        want = [float((tensors[i].double() ** 2).sum()) for i in order]
        assert got.dtype == torch.float64
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)
    moments = activation_moments([big.unsqueeze(0), torch.stack(small), odd.unsqueeze(0)])
    members = [big, *small, odd]
    np.testing.assert_array_equal(moments[0].numpy(), [m.numel() for m in members])
    sums = [float(m.double().sum()) for m in members]
    squares = [float((m.double() ** 2).sum()) for m in members]
    np.testing.assert_allclose(moments[1].numpy(), sums, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(moments[2].numpy(), squares, rtol=1e-6)
    parts = [torch.tensor(1.0), torch.tensor([2.0, 3.0]), torch.tensor(4.0, dtype=torch.float64)]
    assert joined(parts).tolist() == [1.0, 2.0, 3.0, 4.0] and joined(parts).dtype == torch.float64
    assert joined([torch.tensor(5.0), torch.tensor(6.0)]).tolist() == [5.0, 6.0]
