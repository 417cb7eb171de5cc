"""load(): a Record from a run directory that is done, killed, or still being written.

The writers here are real processes: one SIGKILLs itself after N flushes, one appends
while this process reads.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from gradprobe.record import RunDir, load

ROOT = Path(__file__).resolve().parents[1]
LAYERS = [{"name": f"block.{i}", "type": "Linear"} for i in range(4)]
STEPS_PER_FLUSH = 5

# The writer's values are a function of step and layer, so any prefix can be checked.
WRITER = textwrap.dedent(
    """
    import os, signal, sys, time
    import numpy as np
    from gradprobe.record import RunDir

    path, n_flushes, pause, kill = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    run = RunDir.create(path, config={"n_flushes": n_flushes})
    run.store.write_layers([{"name": f"block.{i}", "type": "Linear"} for i in range(4)])
    for f in range(n_flushes):
        steps = np.arange(f * 5, f * 5 + 5)
        values = {"delta_norm": steps[:, None] + np.arange(4) / 10}
        if f >= 2:  # a quantity that appears mid-run: a new column under the readers
            values["act_mean"] = -values["delta_norm"]
        run.store.append(steps, values, {"loss": 1.0 / (steps + 1)})
        run.mark_flush(run.store.n_steps())
        print(f, flush=True)
        time.sleep(pause)
    if kill == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    run.set_status("done")
    run.close()
    """
)


def writer(path: Path, n_flushes: int, *, pause: float = 0.0, kill: bool = False):
    """The command line and environment of a writer process."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    args = [str(path), str(n_flushes), str(pause), "kill" if kill else "end"]
    return [sys.executable, "-c", WRITER, *args], env


def check_prefix(rec, n_steps: int) -> None:
    """Oracle: the first n_steps steps exactly as the writer computed them."""
    steps = np.arange(n_steps)
    delta = steps[:, None] + np.arange(4) / 10
    np.testing.assert_array_equal(rec.steps, steps)
    np.testing.assert_array_equal(rec["delta_norm"], delta)
    np.testing.assert_array_equal(rec.loss, 1.0 / (steps + 1))
    if n_steps > 2 * STEPS_PER_FLUSH:
        act = np.where(steps[:, None] >= 2 * STEPS_PER_FLUSH, -delta, np.nan)
        np.testing.assert_array_equal(rec["act_mean"], act)


def test_sigkilled_writer_keeps_every_flush(tmp_path):
    command, env = writer(tmp_path / "run", 3, kill=True)
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == -9, proc.stderr
    assert (tmp_path / "run" / "metrics.sqlite-wal").exists()  # never checkpointed
    rec = load(tmp_path / "run")
    assert rec.status == "interrupted" and rec.meta["status_inferred"] is True
    assert rec.meta["n_steps"] == 15 and rec.meta["config"] == {"n_flushes": 3}
    assert rec.layers == [layer["name"] for layer in LAYERS] and rec.layer_info == LAYERS
    check_prefix(rec, 3 * STEPS_PER_FLUSH)


def test_reader_sees_whole_flushes_while_another_process_writes(tmp_path):
    command, env = writer(tmp_path / "run", 30, pause=0.02)
    seen = set()
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) as proc:
        proc.stdout.readline()  # the first flush is in
        while proc.poll() is None:
            rec = load(tmp_path / "run")
            assert len(rec) % STEPS_PER_FLUSH == 0
            check_prefix(rec, len(rec))
            seen.add(len(rec))
        proc.stdout.read()
    assert proc.returncode == 0
    print("lengths seen by the reader:", sorted(seen))
    assert len(seen) >= 3, f"the reader saw too few states: {sorted(seen)}"
    rec = load(tmp_path / "run")
    assert rec.status == "done"
    check_prefix(rec, 30 * STEPS_PER_FLUSH)


def test_killed_before_first_flush(tmp_path):
    RunDir.create(tmp_path / "run").update_meta(pid=999_999_999)
    rec = load(tmp_path / "run")
    assert len(rec) == 0 and rec.layers == [] and rec.status == "interrupted"


def test_done_run_after_clean_close(tmp_path):
    with RunDir.create(tmp_path / "run") as run:
        run.store.write_layers(LAYERS)
        run.store.append([0], {"delta_norm": [[0.0, 0.1, 0.2, 0.3]]}, {"loss": [1.0]})
    assert not (tmp_path / "run" / "metrics.sqlite-wal").exists()
    rec = load(tmp_path / "run")
    assert rec.status == "done"
    check_prefix(rec, 1)


def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"no run directory at {tmp_path / 'nope'}"):
        load(tmp_path / "nope")


def test_not_a_run_directory_says_what_is_there(tmp_path):
    (tmp_path / "train.py").write_text("")
    (tmp_path / "data").mkdir()
    with pytest.raises(FileNotFoundError) as err:
        load(tmp_path)
    assert str(err.value) == (
        f"{tmp_path} is not a gradprobe run directory: it has no run.json "
        "(it contains data/, train.py)"
    )
    with pytest.raises(FileNotFoundError, match=r"no run.json \(it is empty\)"):
        load(tmp_path / "data")
    with pytest.raises(NotADirectoryError, match="is a file; pass the run directory"):
        load(tmp_path / "train.py")
