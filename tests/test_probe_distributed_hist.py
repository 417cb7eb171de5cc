"""Gradient histograms under torch.distributed: the counts of the whole model's gradients.

Two ranks on a gloo group (CPU), each with half of every global batch of 8. Under DDP
every rank holds the same averaged gradient: rank 0 counts it, rank 1 adds nothing.
Under FSDP2 (fully_shard: every Linear's weight and bias split along dim 0, unevenly,
with an empty shard on rank 1 for the 1-unit output layer) each rank counts the local
shards and the flush sums the counts. Either way the histograms, on both ranks, equal
exactly those of one process training the unsharded model on the global batch, NaN on
the steps without one (histograms=2 over 4 steps, flushes of 3 steps).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch import nn

import gradprobe as gp
from gradprobe.stats.histogram import N_BINS
from tests.test_probe_distributed import WORLD, gather, init, save_rank
from tests.test_probe_distributed_shard import mlp

BATCH, STEPS = 8, 4
MEASURED = [0, 2]  # histograms=2: every 2nd recorded step
SIZES = [6 * 10 + 10, 10 * 5, 5 * 1 + 1]  # gradient elements of each Linear


def train(model: nn.Module, part: slice) -> dict:
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    with gp.watch(model, opt, histograms=2, flush_every=3) as probe:
        for step in range(STEPS):
            g = torch.Generator().manual_seed(step)
            x, y = torch.randn(BATCH, 6, generator=g), torch.randn(BATCH, 1, generator=g)
            opt.zero_grad()
            nn.functional.mse_loss(model(x[part]), y[part]).backward()
            opt.step()
    rec = probe.record()
    return {"hist": rec.series["grad_hist"], "steps": list(rec.steps), "layers": rec.layers}


def worker(rank: int, port: int, tmp: str) -> None:
    init(rank, port)
    try:
        from torch.distributed.fsdp import fully_shard

        part = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
        out = {"ddp": train(nn.parallel.DistributedDataParallel(mlp()), part)}
        model = mlp()
        for layer in (model[0], model[2], model[4]):
            fully_shard(layer)
        fully_shard(model)
        out["fsdp"] = train(model, part)
        # what this rank alone would count: its shards of the last step's gradients
        out["shard_elements"] = [int(layer.weight.grad.to_local().numel()) for layer in model[::2]]
        save_rank(tmp, rank, out)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    return gather(worker, tmp_path_factory.mktemp("hist"))


@pytest.fixture(scope="module")
def single() -> dict:
    return train(mlp(), slice(None))


def test_single_process_oracle(single):
    """The reference run: counts of every gradient element at the measured steps."""
    hist = single["hist"]
    assert hist.shape == (STEPS, 3, N_BINS) and single["layers"] == ["0", "2", "4"]
    measured = [i for i in range(STEPS) if not np.isnan(hist[i]).all()]
    assert measured == MEASURED
    np.testing.assert_array_equal(hist[MEASURED].sum(axis=2), [SIZES] * len(MEASURED))
    assert (hist[MEASURED] > 0).sum(axis=2).min() >= 3  # spread over several bins


@pytest.mark.parametrize("kind", ["ddp", "fsdp"])
def test_histograms_equal_one_process_on_the_global_batch(ranks, single, kind):
    for rank in ranks:  # rank 1 holds the same global counts, in memory
        got = rank[kind]
        assert got["steps"] == single["steps"] == list(range(STEPS))
        np.testing.assert_array_equal(got["hist"], single["hist"], err_msg=kind)


def test_one_rank_alone_would_count_part_of_the_model(ranks):
    """The oracle can fail: each rank holds a shard, fewer elements than the layer."""
    for rank in ranks:
        assert sum(rank["shard_elements"]) < sum(w for w in (60, 50, 5))
    assert [a + b for a, b in zip(*(r["shard_elements"] for r in ranks))] == [60, 50, 5]
