"""RunDir and run.json: creation rules, statuses, resume, and dead-writer detection."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import time
import types
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from gradprobe._version import __version__
from gradprobe.record import RunDir, RunExistsError, read_run_json
from gradprobe.record.runjson import process_start, versions


def on_disk(path) -> dict:
    return json.loads((path / "run.json").read_text())


def parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    assert moment.utcoffset().total_seconds() == 0
    return moment


def test_create_writes_run_json(tmp_path):
    before = datetime.now(timezone.utc)
    run = RunDir.create(tmp_path / "runs" / "exp1", config={"lr": 0.1, "seed": 0})
    meta = on_disk(run.path)
    assert meta == run.meta
    assert meta["format"] == 1 and meta["name"] == "exp1"
    assert meta["config"] == {"lr": 0.1, "seed": 0}
    assert meta["status"] == "running" and meta["error"] is None and meta["end"] is None
    assert meta["pid"] == os.getpid() and meta["host"] == socket.gethostname()
    assert meta["pid_start"] == process_start(os.getpid())
    assert meta["n_steps"] == 0 and meta["last_flush"] is None and meta["device"] is None
    assert meta["versions"]["gradprobe"] == __version__
    assert meta["versions"]["numpy"] == np.__version__
    assert before <= parse_time(meta["start"]) <= datetime.now(timezone.utc)
    assert repr(run) == f"RunDir({str(run.path)!r}, status='running')"


def proc_fields(pid: int) -> list[str]:
    """Fields 3.. of /proc/<pid>/stat, read independently of the code under test."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def test_process_start_is_proc_field_22():
    assert process_start(os.getpid()) == int(proc_fields(os.getpid())[19])  # [0] is field 3


def test_torch_version_only_when_already_imported(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(__version__="9.9"))
    assert versions()["torch"] == "9.9"
    monkeypatch.delitem(sys.modules, "torch")
    assert "torch" not in versions()


def test_status_updates(tmp_path):
    run = RunDir.create(tmp_path / "a")
    run.update_meta(device="cuda:0")
    run.mark_flush(50)
    meta = on_disk(run.path)
    assert meta["device"] == "cuda:0" and meta["n_steps"] == 50
    parse_time(meta["last_flush"])
    run.set_status("failed", error=RuntimeError("loss is nan"))
    meta = on_disk(run.path)
    assert meta["status"] == "failed" and meta["error"] == "loss is nan"
    assert parse_time(meta["end"]) >= parse_time(meta["start"])
    with pytest.raises(ValueError, match=r"\['running', 'done', 'failed', 'interrupted'\]"):
        run.set_status("finished")
    with pytest.raises(ValueError, match="got 'ok'"):
        run.update_meta(status="ok")
    assert on_disk(run.path)["status"] == "failed"
    assert sorted(p.name for p in run.path.iterdir()) == ["run.json"]  # no temp files left


@pytest.mark.parametrize(
    ("raised", "status", "error"),
    [
        (KeyboardInterrupt(), "interrupted", "KeyboardInterrupt"),
        (RuntimeError("boom"), "failed", "RuntimeError: boom"),
    ],
)
def test_context_manager_records_how_the_run_ended(tmp_path, raised, status, error):
    with pytest.raises(type(raised)), RunDir.create(tmp_path / "a") as run:
        run.store.write_layers([{"name": "fc", "type": "Linear"}])
        raise raised
    meta = on_disk(tmp_path / "a")
    assert (meta["status"], meta["error"]) == (status, error)


def test_context_manager_done_unless_set(tmp_path):
    with RunDir.create(tmp_path / "a"):
        pass
    assert on_disk(tmp_path / "a")["status"] == "done"
    with RunDir.create(tmp_path / "b") as run:
        run.set_status("failed", error="diverged")
    assert on_disk(tmp_path / "b")["status"] == "failed"


def test_existing_run_needs_overwrite_or_resume(tmp_path):
    RunDir.create(tmp_path / "a").set_status("done")
    with pytest.raises(RunExistsError) as err:
        RunDir.create(tmp_path / "a")
    assert isinstance(err.value, FileExistsError)
    message = str(err.value)
    for part in (str(tmp_path / "a"), "status 'done'", "overwrite=True", "resume=True"):
        assert part in message
    with pytest.raises(ValueError, match="not both"):
        RunDir.create(tmp_path / "a", overwrite=True, resume=True)


def test_overwrite_deletes_only_gradprobe_files(tmp_path):
    run = RunDir.create(tmp_path / "a")
    run.store.write_layers([{"name": "fc", "type": "Linear"}])
    run.store.append([0], {"grad_norm": [[1.0]]})
    for name in ("findings.json", "report.html", "notes.txt"):
        (run.path / name).write_text("x")
    (run.path / "tb").mkdir()
    (run.path / "tb" / "events").write_text("x")
    run.close()
    fresh = RunDir.create(tmp_path / "a", overwrite=True)
    assert sorted(p.name for p in fresh.path.iterdir()) == ["notes.txt", "run.json"]
    assert fresh.store.n_steps() == 0


def test_resume_keeps_data_and_records_the_time(tmp_path):
    run = RunDir.create(tmp_path / "a", config={"lr": 0.1})
    run.store.write_layers([{"name": "fc", "type": "Linear"}])
    run.store.append([0, 1], {"grad_norm": [[1.0], [2.0]]})
    run.mark_flush(2)
    run.set_status("interrupted")
    run.close()
    start = on_disk(run.path)["start"]
    again = RunDir.create(tmp_path / "a", resume=True)
    meta = on_disk(again.path)
    assert meta["status"] == "running" and meta["end"] is None and meta["error"] is None
    assert meta["start"] == start and meta["n_steps"] == 2 and meta["config"] == {"lr": 0.1}
    assert len(meta["resumed"]) == 1 and parse_time(meta["resumed"][0]) >= parse_time(start)
    assert again.store.last_step() == 1
    again.store.append([2], {"grad_norm": [[3.0]]})
    np.testing.assert_array_equal(again.store.read()["grad_norm"], [[1.0], [2.0], [3.0]])
    assert RunDir.create(tmp_path / "b", resume=True).meta["status"] == "running"  # nothing yet


def test_resume_refuses_a_live_writer(tmp_path):
    run = RunDir.create(tmp_path / "a")
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as other:
        try:
            run.update_meta(pid=other.pid, pid_start=process_start(other.pid))
            with pytest.raises(RunExistsError, match=f"being written by process {other.pid}"):
                RunDir.create(tmp_path / "a", resume=True)
        finally:
            other.kill()


def test_path_is_a_file(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("x")
    with pytest.raises(NotADirectoryError, match=f"cannot use {target} as a run directory"):
        RunDir.create(target)
    with pytest.raises(NotADirectoryError, match=f"cannot create run directory {target / 'run'}"):
        RunDir.create(target / "run")


def test_directory_not_writable(tmp_path, monkeypatch):
    def read_only_mount(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("gradprobe.record.rundir.tempfile.mkstemp", read_only_mount)
    with pytest.raises(PermissionError, match=r"run directory .*/a is not writable \(Read-only"):
        RunDir.create(tmp_path / "a")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod")
def test_directory_not_writable_by_mode(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a").chmod(0o500)
    try:
        with pytest.raises(PermissionError, match="is not writable"):
            RunDir.create(tmp_path / "a")
    finally:
        (tmp_path / "a").chmod(0o700)


# -- read_run_json: a dead writer's "running" reads as "interrupted" ---------------------


def dead_pid() -> int:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(proc.stdout)


def test_dead_writer_reads_as_interrupted(tmp_path):
    run = RunDir.create(tmp_path / "a")
    run.update_meta(pid=dead_pid())
    meta = read_run_json(run.path)
    assert meta["status"] == "interrupted" and meta["status_inferred"] is True
    assert on_disk(run.path)["status"] == "running"  # the file is left as it was
    assert read_run_json(run.path / "run.json")["status"] == "interrupted"


def test_live_writer_reads_as_running(tmp_path):
    run = RunDir.create(tmp_path / "a")
    meta = read_run_json(run.path)
    assert meta["status"] == "running" and "status_inferred" not in meta


def test_reused_pid_reads_as_interrupted(tmp_path):
    run = RunDir.create(tmp_path / "a")
    run.update_meta(pid_start=process_start(os.getpid()) - 1)  # our pid, another start
    assert read_run_json(run.path)["status"] == "interrupted"


def test_zombie_reads_as_interrupted(tmp_path):
    run = RunDir.create(tmp_path / "a")
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 10
        while proc_fields(proc.pid)[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        run.update_meta(pid=proc.pid, pid_start=None)
        assert read_run_json(run.path)["status"] == "interrupted"
    finally:
        proc.wait()


def test_other_host_and_final_statuses_are_left_alone(tmp_path):
    run = RunDir.create(tmp_path / "a")
    run.update_meta(pid=dead_pid(), host="elsewhere")
    assert read_run_json(run.path)["status"] == "running"
    run.update_meta(host=socket.gethostname())
    run.set_status("done")
    assert read_run_json(run.path)["status"] == "done"


def test_bad_run_json(tmp_path):
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(ValueError, match="run.json is not valid JSON"):
        read_run_json(tmp_path)
    (tmp_path / "run.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="holds a list, not a JSON object"):
        read_run_json(tmp_path)
    with pytest.raises(RunExistsError, match="unreadable run.json"):
        RunDir.create(tmp_path)
    (tmp_path / "run.json").unlink()
    (tmp_path / "metrics.sqlite").write_bytes(b"")
    with pytest.raises(RunExistsError, match="a metrics.sqlite without run.json"):
        RunDir.create(tmp_path)
