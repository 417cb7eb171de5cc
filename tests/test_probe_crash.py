"""Crash safety with real processes: SIGKILL, KeyboardInterrupt, SIGINT, exit without close."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import gradprobe as gp

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

# The training loop every child runs; BODY is spliced in where the loop goes.
PRELUDE = """
import os, signal, sys, time
import torch
from torch import nn
import gradprobe as gp

torch.set_num_threads(1)
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
g = torch.Generator().manual_seed(1)
batches = [(torch.randn(16, 5, generator=g), torch.randn(16, 2, generator=g)) for _ in range(4)]
run_dir = sys.argv[1]


def train_step(probe, i):
    x, y = batches[i % 4]
    opt.zero_grad()
    loss = ((model(x) - y) ** 2).mean()
    loss.backward()
    opt.step()
    probe.log_loss(loss)
    print("loss", i, repr(loss.item()), flush=True)
"""


def run_child(tmp_path, body: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    code = PRELUDE + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"},
    )


def printed_losses(stdout: str) -> dict[int, float]:
    out = {}
    for line in stdout.splitlines():
        if line.startswith("loss "):
            _, i, value = line.split()
            out[int(i)] = float(value)
    return out


def assert_complete(rec, n: int, losses: dict[int, float]) -> None:
    """Steps 0..n-1 all there, each with every quantity measured and the child's loss
    (the children pass detail_every=1, so weight_norm and update_norm are at every step)."""
    np.testing.assert_array_equal(rec.steps, np.arange(n))
    assert rec.layers == ["0", "2", "4"]
    np.testing.assert_array_equal(rec.loss, [losses[i] for i in range(n)])
    for q in ("grad_norm", "bias_grad_norm", "delta_norm", "weight_norm", "update_norm"):
        assert np.isfinite(rec[q]).all(), q
    assert np.isfinite(rec["act_mean"]).all()
    assert np.isfinite(rec.global_grad_norm).all()


def test_sigkill_keeps_every_flushed_step(tmp_path):
    proc = run_child(
        tmp_path,
        """
        probe = gp.watch(model, opt, run_dir=run_dir, flush_every=5, flush_secs=1e9, detail_every=1)
        for i in range(23):
            train_step(probe, i)
        os.kill(os.getpid(), signal.SIGKILL)
        """,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    losses = printed_losses(proc.stdout)
    assert len(losses) == 23
    rec = gp.load(tmp_path / "run")
    assert rec.status == "interrupted"
    assert rec.meta.get("status_inferred") is True  # the dead writer never said so itself
    # flushes ran at the first forward of steps 5, 10, 15, 20: steps 20..22 were never flushed
    assert_complete(rec, 20, losses)


def test_keyboard_interrupt_in_loop_flushes_everything(tmp_path):
    proc = run_child(
        tmp_path,
        """
        with gp.watch(
            model, opt, run_dir=run_dir, flush_every=100, flush_secs=1e9, detail_every=1
        ) as probe:
            for i in range(100):
                if i == 7:
                    raise KeyboardInterrupt
                train_step(probe, i)
        """,
    )
    assert proc.returncode != 0
    assert "KeyboardInterrupt" in proc.stderr
    rec = gp.load(tmp_path / "run")
    assert rec.status == "interrupted"
    assert rec.meta["error"] == "KeyboardInterrupt"
    assert "status_inferred" not in rec.meta  # written by the probe, not guessed by load
    assert_complete(rec, 7, printed_losses(proc.stdout))


def test_real_sigint_flushes_everything(tmp_path):
    code = PRELUDE + textwrap.dedent(
        """
        try:
            with gp.watch(
                model, opt, run_dir=run_dir, flush_every=1000, flush_secs=1e9, detail_every=1
            ) as p:
                for i in range(100000):
                    train_step(p, i)
                    if i == 4:
                        print("ready", flush=True)
                    time.sleep(0.01)
        except KeyboardInterrupt:
            print("interrupted after", p.step_count, flush=True)
            raise
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path / "run")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"},
    )
    lines = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.strip() == "ready":
                break
        assert lines and lines[-1].strip() == "ready", "".join(lines) + proc.stderr.read()
        time.sleep(0.05)  # a few more steps
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stdout = "".join(lines) + rest
    assert "KeyboardInterrupt" in err
    done = [line for line in stdout.splitlines() if line.startswith("interrupted after")]
    assert done, stdout + err
    n = int(done[0].split()[-1])
    assert n >= 5
    rec = gp.load(tmp_path / "run")
    assert rec.status == "interrupted"
    assert rec.meta["error"] == "KeyboardInterrupt"
    assert "status_inferred" not in rec.meta
    # the signal may land inside the probe's step-end hook, after the optimizer step was
    # counted: that one step's statistics may be missing, never an earlier one
    assert len(rec) in (n - 1, n)
    assert_complete(rec, len(rec), printed_losses(stdout))


def test_exit_without_close_is_interrupted(tmp_path):
    proc = run_child(
        tmp_path,
        """
        probe = gp.watch(
            model, opt, run_dir=run_dir, flush_every=100, flush_secs=1e9, detail_every=1
        )
        for i in range(9):
            train_step(probe, i)
        # no probe.close(): the interpreter exits normally
        """,
    )
    assert proc.returncode == 0, proc.stderr
    rec = gp.load(tmp_path / "run")
    assert rec.status == "interrupted"
    assert "close()" in rec.meta["error"]
    assert "status_inferred" not in rec.meta
    assert_complete(rec, 9, printed_losses(proc.stdout))


@pytest.mark.parametrize(
    ("exit_arg", "returncode", "status", "error"),
    [("0", 0, "done", None), ("3", 3, "failed", "SystemExit: 3")],
    ids=["exit0", "exit3"],
)
def test_sys_exit_in_with_block(tmp_path, exit_arg, returncode, status, error):
    """In a real process: sys.exit(0) ends the run like the end of the block, a nonzero
    code is a failure, and the atexit hook does not relabel either afterwards.
    (SystemExit(None) and close() in a finally: test_probe_lifecycle.)"""
    proc = run_child(
        tmp_path,
        f"""
        with gp.watch(
            model, opt, run_dir=run_dir, flush_every=100, flush_secs=1e9, detail_every=1
        ) as probe:
            for i in range(100):
                if i == 5:
                    sys.exit({exit_arg})
                train_step(probe, i)
        """,
    )
    assert proc.returncode == returncode, proc.stderr
    rec = gp.load(tmp_path / "run")
    assert rec.status == status
    assert rec.meta["error"] == error
    assert "status_inferred" not in rec.meta
    assert_complete(rec, 5, printed_losses(proc.stdout))
