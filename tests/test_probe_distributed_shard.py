"""Sharded parameters (FSDP2, DTensor) report the global norms of the unsharded model.

Two ranks on a gloo group (CPU). FSDP2's `fully_shard` splits every Linear's weight and
bias along dim 0 (evenly, unevenly, and with an empty shard on rank 1 for the 1-unit
output layer); the record equals one process training the unsharded model on the global
batch (rtol 1e-5). DTensors placed by hand check the other placement: a Replicate weight
counts once, not once per rank, next to a Shard(0) bias.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch import nn

import gradprobe as gp
from tests.test_probe_distributed import WORLD, gather, init, save_rank

BATCH, STEPS = 8, 3
COMPARED = (
    "grad_norm",
    "bias_grad_norm",
    "delta_norm",
    "grad_abs_mean",
    "grad_abs_max",
    "grad_nonfinite",
    "weight_norm",
    "update_norm",
    "update_ratio",
    "weight_change_mean",
    "act_mean",
    "act_std",
    "saturated_frac",
    "dead_frac",
)


def mlp() -> nn.Sequential:
    torch.manual_seed(0)  # weights (10, 6) split 5 + 5, (5, 10) 3 + 2, (1, 5) 1 + 0
    return nn.Sequential(
        nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 5, bias=False), nn.Tanh(), nn.Linear(5, 1)
    )


def train(model: nn.Module, part: slice) -> dict:
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    with gp.watch(model, opt, detail_every=1, flush_every=2) as probe:
        for step in range(STEPS):
            g = torch.Generator().manual_seed(step)
            x, y = torch.randn(BATCH, 6, generator=g), torch.randn(BATCH, 1, generator=g)
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(x[part]), y[part])
            loss.backward()
            opt.step()
            probe.log_loss(loss)
    rec = probe.record()
    out = {q: rec[q] for q in COMPARED}
    return out | {"loss": rec.loss, "global_grad_norm": rec.global_grad_norm}


def by_hand(rank: int) -> dict:
    """A Linear with a Replicate DTensor weight and a Shard(0) DTensor bias, grads set."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor

    mesh = init_device_mesh("cpu", (WORLD,))
    layer = nn.Linear(4, 6)
    w, b = torch.arange(24.0).reshape(6, 4) / 10, torch.arange(6.0)
    gw, gb = -w / 2, b + 1
    layer.weight = nn.Parameter(distribute_tensor(w, mesh, [Replicate()]))
    layer.bias = nn.Parameter(distribute_tensor(b, mesh, [Shard(0)]))
    with gp.watch(layer, detail_every=1) as probe:
        layer.weight.grad = distribute_tensor(gw, mesh, [Replicate()])
        layer.bias.grad = distribute_tensor(gb, mesh, [Shard(0)])
        probe.step()
    rec = probe.record()
    expected = {
        "grad_norm": gw.norm(),
        "bias_grad_norm": gb.norm(),
        "grad_abs_max": gw.abs().max(),
        "grad_abs_mean": gw.abs().mean(),
        "weight_norm": w.norm(),
    }
    got = {q: float(rec[q][0, 0]) for q in expected}
    got["global_grad_norm"] = float(rec.global_grad_norm[0])
    expected["global_grad_norm"] = torch.cat([gw.reshape(-1), gb]).norm()
    return {"got": got, "expected": {q: float(v) for q, v in expected.items()}}


def worker(rank: int, port: int, tmp: str) -> None:
    init(rank, port)
    try:
        from torch.distributed.fsdp import fully_shard

        model = mlp()
        for layer in (model[0], model[2], model[4]):
            fully_shard(layer)
        fully_shard(model)
        out = {"fsdp": train(model, slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD))}
        # the last step's gradient shard of the first layer: what a per-rank norm would say
        out["shard_norm"] = float(model[0].weight.grad.to_local().norm())
        out["by_hand"] = by_hand(rank)
        save_rank(tmp, rank, out)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    return gather(worker, tmp_path_factory.mktemp("fsdp"))


def test_fsdp2_record_equals_the_unsharded_model(ranks):
    single = train(mlp(), slice(None))
    for name, expected in single.items():
        if name not in ("act_nonfinite",):
            assert np.isfinite(expected).any(), name
        for rank in ranks:
            np.testing.assert_allclose(rank["fsdp"][name], expected, rtol=1e-5, err_msg=name)
    assert np.isfinite(single["grad_norm"]).all() and np.isfinite(single["delta_norm"]).all()


def test_per_shard_norms_would_under_report(ranks):
    """The oracle can fail: each rank's shard alone has a smaller gradient norm."""
    recorded = ranks[0]["fsdp"]["grad_norm"][-1, 0]
    for rank in ranks:
        assert rank["shard_norm"] < 0.95 * recorded
    np.testing.assert_allclose(
        np.hypot(ranks[0]["shard_norm"], ranks[1]["shard_norm"]), recorded, rtol=1e-5
    )


def test_dtensor_placements_by_hand(ranks):
    for rank in ranks:
        got, expected = rank["by_hand"]["got"], rank["by_hand"]["expected"]
        for name in expected:
            np.testing.assert_allclose(got[name], expected[name], rtol=1e-6, err_msg=name)
