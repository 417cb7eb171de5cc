"""Under DDP the Record is that of one process on the global batch; only rank 0 writes.

Two ranks on a gloo group (CPU), each with half of every global batch of 8, against one
process given the whole batch: every layer quantity, the loss, the global gradient norm
and the gradient through time agree to rtol 1e-5. The model has a Linear with a bias
(delta read from the bias gradient, already averaged by DDP), a Linear without one
(delta hooked, its batch-summed vector averaged over ranks before the norm), a ReLU
layer with units dead on one rank's half but not on the other's (dead_frac of the
global batch), a tanh layer (saturation) and an LSTM (delta_norm_t).
"""

from __future__ import annotations

import os
import pickle
import socket
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import gradprobe as gp
from gradprobe.stats.quantities import LAYER_QUANTITIES

WORLD, BATCH, STEPS = 2, 8, 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(worker, *args) -> None:
    """Run worker(rank, *args) on WORLD processes; join; raise if one raised.

    Forked from one server that imported torch, DDP/FSDP's torch._dynamo and gradprobe
    once (spawn would import them in every process: ~10 s each on a loaded CPU).
    """
    import multiprocessing

    multiprocessing.set_forkserver_preload(
        ["torch", "torch._dynamo", "torch.distributed.fsdp", "gradprobe", __name__]
    )
    mp.start_processes(worker, args=args, nprocs=WORLD, join=True, start_method="forkserver")


def save_rank(tmp: str, rank: int, out) -> None:
    """A worker's result, for `gather` to read back in the test process."""
    with open(os.path.join(tmp, f"rank{rank}.pkl"), "wb") as f:
        pickle.dump(out, f)


def gather(worker, tmp) -> list:
    """Run worker(rank, port, str(tmp)) on WORLD ranks; each rank's `save_rank` result."""
    spawn(worker, free_port(), str(tmp))
    return [pickle.loads((Path(tmp) / f"rank{r}.pkl").read_bytes()) for r in range(WORLD)]


def init(rank: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)


class Net(nn.Module):
    """MLP layers and an LSTM: bias-read and hooked deltas, ReLU, tanh, through time."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.mlp = nn.Sequential(
            nn.Linear(6, 16),
            nn.ReLU(),
            nn.Linear(16, 12, bias=False),
            nn.Tanh(),
            nn.Linear(12, 3),
        )
        with torch.no_grad():  # half the ReLU units rarely active: dead on a half batch
            self.mlp[0].bias[:8] = -1.2
        self.lstm = nn.LSTM(3, 5, batch_first=True)
        self.head = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = x[:, :4].reshape(-1, 2, 2)[..., :1].expand(-1, 2, 3)  # (B, T=2, 3)
        return self.mlp(x) + self.head(self.lstm(seq.contiguous())[0][:, -1])


def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(10 + step)
    return torch.randn(BATCH, 6, generator=g), torch.randint(0, 3, (BATCH,), generator=g)


def loop(watched: nn.Module, opt, probe, part: slice, steps: int = STEPS) -> None:
    for step in range(steps):
        x, y = batch(step)
        opt.zero_grad()
        loss = nn.functional.cross_entropy(watched(x[part]), y[part])
        loss.backward()
        opt.step()
        probe.log_loss(loss)


def train(model: nn.Module, watched: nn.Module, part: slice, **watch) -> gp.Record:
    """STEPS steps of SGD on the `part` of each global batch; the probe's Record."""
    opt = torch.optim.SGD(watched.parameters(), lr=0.5, momentum=0.9)
    with gp.watch(watched, opt, detail_every=1, flush_every=2, **watch) as probe:
        loop(watched, opt, probe, part)
    return probe.record()


def count_host_reads(run) -> Counter:
    """Tensor values read to the host from gradprobe code while run() runs."""
    from tests.test_probe_sync import READS, _from_gradprobe

    counts: Counter = Counter()
    originals = {name: getattr(torch.Tensor, name) for name in READS}

    def counting(name, original):
        def counted(self, *args, **kwargs):
            if _from_gradprobe():
                counts[name] += 1
            return original(self, *args, **kwargs)

        return counted

    try:
        for name, original in originals.items():
            setattr(torch.Tensor, name, counting(name, original))
        run()
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)
    return counts


def summary(rec: gp.Record) -> dict:
    out = {q: rec[q] for q in LAYER_QUANTITIES}
    out |= {"loss": rec.loss, "global_grad_norm": rec.global_grad_norm}
    out |= {"delta_norm_t": rec.series["delta_norm_t"], "status": rec.status}
    return out | {"layers": rec.layers, "steps": rec.steps}


def ddp_worker(rank: int, port: int, tmp: str) -> None:
    init(rank, port)
    try:
        model = Net()
        ddp = nn.parallel.DistributedDataParallel(model)
        part = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
        # each rank names its own run dir, so a write by rank 1 would show
        rec = train(model, ddp, part, run_dir=os.path.join(tmp, f"run{rank}"))
        out = summary(rec)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
        # resumed: rank 0 reads its run's last step and every rank continues from it
        run_dir = os.path.join(tmp, f"run{rank}")
        with gp.watch(
            ddp, opt, detail_every=2, flush_every=1000, run_dir=run_dir, resume=True
        ) as probe:
            loop(ddp, opt, probe, part, 1)  # the first step: layer order, caches
            out["reads"] = count_host_reads(lambda: loop(ddp, opt, probe, part, 4))
        out["resumed"] = list(probe.record().steps)
        save_rank(tmp, rank, out)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """(tmp dir, per-rank summaries) of one 2-rank DDP run."""
    tmp = tmp_path_factory.mktemp("ddp")
    return tmp, gather(ddp_worker, tmp)


def test_ddp_record_equals_one_process_on_the_global_batch(ddp_run):
    ranks = ddp_run[1]
    model = Net()
    single = summary(train(model, model, slice(None)))
    layers = single["layers"]
    assert ranks[0]["layers"] == [f"module.{name}" for name in layers]
    assert list(ranks[0]["steps"]) == list(range(STEPS))
    for name, expected in single.items():
        if name in ("layers", "steps", "status"):
            continue
        for rank in ranks:  # rank 1 holds the same global figures, in memory
            np.testing.assert_allclose(rank[name], expected, rtol=1e-5, err_msg=name)
    # the quantities are measured, not NaN on both sides
    mlp = [layers.index(f"mlp.{i}") for i in (0, 2, 4)]
    for name in ("grad_norm", "delta_norm", "act_std", "weight_norm", "update_norm"):
        assert np.isfinite(single[name][:, mlp]).all(), name
    assert np.isfinite(single["dead_frac"][:, mlp[0]]).all()
    assert np.isfinite(single["saturated_frac"][:, mlp[1]]).all()
    assert np.isfinite(single["delta_norm_t"][:, layers.index("lstm")]).all()
    assert np.isfinite(single["loss"]).all()


def test_only_rank_0_writes_the_run_dir(ddp_run):
    tmp_path, ranks = ddp_run
    assert (tmp_path / "run0" / "run.json").is_file()
    assert not (tmp_path / "run1").exists()
    on_disk = summary(gp.load(tmp_path / "run0"))
    assert on_disk["status"] == "done" and ranks[1]["status"] == "done"
    for name in ("grad_norm", "delta_norm", "dead_frac", "loss", "delta_norm_t"):
        first = on_disk[name][:STEPS]  # then the resumed run's steps
        np.testing.assert_allclose(first, ranks[1][name], rtol=1e-12, err_msg=name)


def test_no_host_read_between_flushes(ddp_run):
    for rank in ddp_run[1]:
        assert dict(rank["reads"]) == {}


def test_a_resumed_run_continues_its_step_count_on_every_rank(ddp_run):
    rank0, rank1 = ddp_run[1]
    assert rank0["resumed"] == list(range(STEPS + 5))  # read back from run0
    assert rank1["resumed"] == list(range(STEPS, STEPS + 5))  # in memory: this run only


def test_the_oracle_can_fail():
    """Per-rank figures differ from the global ones: combining them wrongly would show.

    Half batches give other hooked delta norms (the mean of norms is not the norm of the
    mean), other dead fractions and other gradient norms than the global batch.
    """
    model = Net()
    full = summary(train(model, model, slice(None)))
    halves = []
    for part in (slice(0, 4), slice(4, 8)):
        model = Net()
        halves.append(summary(train(model, model, part)))
    hooked = full["layers"].index("mlp.2")
    relu = full["layers"].index("mlp.0")
    mean_of_norms = (halves[0]["delta_norm"] + halves[1]["delta_norm"]) / 2
    assert not np.allclose(mean_of_norms[:, hooked], full["delta_norm"][:, hooked], rtol=1e-3)
    dead_sum = halves[0]["dead_frac"] + halves[1]["dead_frac"]
    assert not np.allclose(dead_sum[0, relu], full["dead_frac"][0, relu])
    assert not np.allclose(halves[0]["dead_frac"][0, relu], full["dead_frac"][0, relu])
