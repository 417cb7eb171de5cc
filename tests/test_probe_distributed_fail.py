"""A rank that dies or hangs does not hang rank 0: a clear error within dist_timeout.

Two ranks on a gloo group whose own timeout is 30 minutes (torch's default). Rank 1
records one step and then either hangs (waits, never flushing) or dies (os._exit, no
close); rank 0 reaches its flush and must raise DistributedError naming what happened
within the probe's dist_timeout, and its run directory must say failed, with that error.
"""

from __future__ import annotations

import json
import os
import pickle
import time

import pytest
import torch
import torch.distributed as dist
from torch import nn

import gradprobe as gp
from gradprobe.probe.distributed import DistributedError
from tests.test_probe_distributed import free_port, init, spawn

TIMEOUT = 1.0  # seconds: dist_timeout of the probe


def step(model: nn.Module, opt: torch.optim.Optimizer) -> None:
    opt.zero_grad()
    model(torch.randn(4, 3)).square().mean().backward()
    opt.step()


def rank0(tmp: str) -> dict:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    run_dir = os.path.join(tmp, "run")
    out: dict = {}
    try:
        with gp.watch(model, opt, flush_every=1, run_dir=run_dir, dist_timeout=TIMEOUT):
            step(model, opt)
            start = time.monotonic()
            step(model, opt)  # its first forward flushes step 0: the others must join
    except DistributedError as exc:
        out = {"error": str(exc), "seconds": time.monotonic() - start}
    with open(os.path.join(run_dir, "run.json")) as f:
        out["run"] = json.load(f)
    return out


def worker(rank: int, port: int, tmp: str, fate: str) -> None:
    init(rank, port)
    if rank == 0:
        out = rank0(tmp)
        with open(os.path.join(tmp, "rank0.pkl"), "wb") as f:
            pickle.dump(out, f)
        os._exit(0)  # the group is broken: no destroy_process_group
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    gp.watch(model, opt, flush_every=1, dist_timeout=TIMEOUT)
    step(model, opt)
    if fate == "hang":  # alive, holding its connections, but never flushing
        deadline = time.monotonic() + 60
        while not os.path.exists(os.path.join(tmp, "rank0.pkl")) and time.monotonic() < deadline:
            time.sleep(0.05)
    os._exit(0)  # dies: no close(), no atexit, sockets closed by the OS


@pytest.mark.parametrize("fate", ["hang", "die"])
def test_rank_0_gets_a_clear_error_within_the_timeout(tmp_path, fate):
    assert dist.default_pg_timeout.total_seconds() >= 600  # the group alone would wait
    spawn(worker, free_port(), str(tmp_path), fate)
    out = pickle.loads((tmp_path / "rank0.pkl").read_bytes())
    assert "error" in out, f"rank 0 got no error: {out}"
    message = out["error"]
    assert message.startswith("gradprobe: rank 0 of 2, flushing steps 0..0: ")
    assert "A rank has died, hung or is not calling the probe" in message
    assert "the all-reduce (max) of the statistics " in message
    if fate == "hang":  # alive: the wait runs out (a death is seen sooner, as a reset)
        assert "did not complete within dist_timeout=1 s: " in message
    assert out["seconds"] < TIMEOUT + 20  # not the group's 30 minutes (a loaded CI CPU)
    run = out["run"]
    assert run["status"] == "failed"
    assert run["error"] == f"DistributedError: {message}"
