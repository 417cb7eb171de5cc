"""This process in the torch.distributed group: its role, and the probe's collectives.

Whether a probe reduces at all (resolve), whether this process writes the run directory
(is_writer), which parameters' statistics this rank adds to the all-reduced sums
(contributes) and the local shard of a DTensor it measures; then GroupMember, which runs
the probe's collectives with a timeout and turns any failure into a DistributedError.
What each quantity means across ranks, and the reduction itself: gradprobe.probe.distributed.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from datetime import timedelta
from functools import partial

import torch
import torch.distributed as dist


class DistributedError(RuntimeError):
    """A collective of the probe failed: a rank died, hung, or is not calling the probe."""


def is_dtensor(t: object) -> bool:
    """Whether t is a torch.distributed.tensor.DTensor (never imports that module)."""
    module = sys.modules.get("torch.distributed.tensor")
    return module is not None and isinstance(t, module.DTensor)


def local(t: torch.Tensor) -> torch.Tensor:
    """This rank's shard of a DTensor; any other tensor as it is."""
    return t.to_local() if is_dtensor(t) else t


def resolve(distributed: bool | None) -> bool:
    """Whether a probe reduces across ranks; None: when a group of > 1 rank is running."""
    if distributed not in (None, True, False):
        raise ValueError(f"distributed={distributed!r} is not one of: None, True, False")
    ready = dist.is_available() and dist.is_initialized()
    if distributed is None:
        return ready and dist.get_world_size() > 1
    if distributed and not ready:
        raise ValueError(
            "distributed=True needs torch.distributed running: call "
            "torch.distributed.init_process_group() before watch()"
        )
    return distributed


def is_writer(distributed: bool | None) -> bool:
    """Whether this process writes the run directory: rank 0, or any rank on its own."""
    return not resolve(distributed) or dist.get_rank() == 0


def check_timeout(dist_timeout: object) -> None:
    """dist_timeout must be None or a positive finite number of seconds."""
    if dist_timeout is None:
        return
    number = isinstance(dist_timeout, (int, float)) and not isinstance(dist_timeout, bool)
    if not number or not math.isfinite(dist_timeout) or dist_timeout <= 0:
        raise ValueError(
            f"dist_timeout={dist_timeout!r} must be None (the process group's timeout) or "
            "a positive number of seconds"
        )


def contributes(p: torch.Tensor, rank: int) -> bool:
    """Whether this rank adds p's statistics to the sums that are all-reduced.

    One rank per distinct element adds it: rank 0 for a plain (replicated) parameter; for
    a DTensor each rank at coordinate 0 of every mesh dim that replicates it. A rank whose
    shard is empty adds nothing.
    """
    if not is_dtensor(p):
        return rank == 0
    coordinate = p.device_mesh.get_coordinate()
    if coordinate is None or p.to_local().numel() == 0:
        return False
    for placement, c in zip(p.placements, coordinate):
        if placement.is_partial():
            raise ValueError(
                f"a parameter of shape {tuple(p.shape)} has placements {p.placements}: "
                "Partial (pending-sum) parameters are not supported; allowed: Shard, "
                "Replicate"
            )
        if placement.is_replicate() and c != 0:
            return False
    return True


class GroupMember:
    """This rank in the default process group; its collectives, each with a timeout.

    Args:
        timeout: seconds each collective may take; None: the process group's timeout.
        device: where the tensors of its collectives live.
    """

    def __init__(self, timeout: float | None, device: torch.device) -> None:
        check_timeout(timeout)
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.timeout = timeout
        self.error: str | None = None  # the first failure; no collective after it
        self._where = "at watch()"  # what the probe was doing, for messages
        self._device = device

    # -- collectives -----------------------------------------------------------------
    def _collective(self, start: Callable[[], dist.Work], what: str) -> None:
        """Launch a collective (start() returns its Work) and wait, at most the timeout."""
        try:
            work = start()
            if self.timeout is None:
                work.wait()
            else:
                work.wait(timedelta(seconds=self.timeout))
        except Exception as exc:  # the backends raise RuntimeError and subclasses
            limit = (
                "the group's timeout"
                if self.timeout is None
                else f"dist_timeout={self.timeout:g} s"
            )
            verdict = f"did not complete within {limit}" if "timed out" in str(exc) else "failed"
            self._fail(f"the {what} {verdict}: {exc}", exc)

    def _fail(self, what: str, cause: BaseException | None = None) -> None:
        self.error = (
            f"gradprobe: rank {self.rank} of {self.world}, {self._where}: "
            f"{what}. A rank has died, hung or is not calling the probe: every rank must "
            "call watch() and record the same steps, and flush(), record() and close() "
            "are collective (watch(..., distributed=False) records each rank on its own)"
        )
        raise DistributedError(self.error) from cause

    def start_step(self, last: int | None) -> int:
        """The step count to start at, rank 0's (a resumed run's last step + 1) on all."""
        t = torch.tensor([-1 if last is None else last], device=self._device)
        start = partial(dist.broadcast, t, src=0, async_op=True)
        self._collective(start, "broadcast of the step count")
        first = int(t.item())
        return 0 if first < 0 else first + 1

    def __repr__(self) -> str:
        state = "failed" if self.error is not None else "ok"
        return f"GroupMember(rank {self.rank} of {self.world}, timeout={self.timeout}, {state})"
