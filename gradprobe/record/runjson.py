"""run.json: what a run is and how it ended, written atomically, read with liveness checks."""

from __future__ import annotations

import json
import os
import platform
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from gradprobe._version import __version__

FORMAT = 1
STATUSES = ("running", "done", "failed", "interrupted")


def now() -> str:
    """The current time, ISO-8601 in UTC."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def check_status(status: str) -> str:
    """Return `status` if it is one of STATUSES, else raise ValueError."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {list(STATUSES)}; got {status!r}")
    return status


def versions() -> dict[str, str]:
    """Versions of gradprobe, Python, numpy, and torch when it is already imported."""
    found = {"gradprobe": __version__, "python": platform.python_version(), "numpy": np.__version__}
    # Importing torch here would cost a second or more for a version string; the probe
    # has imported it anyway whenever it matters.
    if "torch" in sys.modules:
        found["torch"] = str(getattr(sys.modules["torch"], "__version__", "unknown"))
    return found


def _proc_stat(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/<pid>/stat (state first), None where there is no /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 2, the command name, is in parentheses and may hold spaces and ")".
    return text[text.rindex(")") + 2 :].split()


def process_start(pid: int) -> int | None:
    """Start time of process `pid` in clock ticks since boot (/proc field 22), or None."""
    fields = _proc_stat(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def process_alive(pid: int, start: int | None = None) -> bool:
    """Whether process `pid` runs, and is the one that started at `start` if given."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    fields = _proc_stat(pid)
    if fields is None:
        return True
    # A zombie has exited but not been reaped; a different start time means the pid was
    # reused by another process after ours died.
    return fields[0] != "Z" and (start is None or process_start(pid) == start)


def new_meta(name: str, config: Any) -> dict[str, Any]:
    """The run.json of a run starting now in this process."""
    pid = os.getpid()
    return {
        "format": FORMAT,
        "name": name,
        "config": config,
        "versions": versions(),
        "device": None,
        "start": now(),
        "end": None,
        "status": "running",
        "error": None,
        "pid": pid,
        "pid_start": process_start(pid),
        "host": socket.gethostname(),
        "last_flush": None,
        "n_steps": 0,
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write `data` to `path` atomically: readers see the old file or the new, never half.

    No fsync: run.json is rewritten at every flush, and an fsync would cost milliseconds
    to guard against a power cut, which metrics.sqlite (synchronous=NORMAL) does not
    survive intact either.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # default=str: a Path or dtype in a config must not stop the run from being recorded.
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def read_raw(path: Path) -> dict[str, Any]:
    """The contents of run.json as written, with a clear error when it is not JSON."""
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds a {type(data).__name__}, not a JSON object")
    return data


def read_run_json(path: str | Path) -> dict[str, Any]:
    """Read a run's run.json, reporting a dead writer's run as "interrupted".

    A run killed by SIGKILL or a power cut never wrote its last status, so it still says
    "running". When the writer ran on this host and its process is gone (or its pid now
    belongs to another process), the status returned is "interrupted" with
    "status_inferred": True. The file is not rewritten: the reader may not own it. On
    another host liveness cannot be checked, and "running" is left as it is.

    Args:
        path: the run directory, or its run.json.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "run.json"
    meta = read_raw(path)
    pid = meta.get("pid")
    if (
        meta.get("status") == "running"
        and meta.get("host") == socket.gethostname()
        and isinstance(pid, int)
        and not process_alive(pid, meta.get("pid_start"))
    ):
        meta["status"] = "interrupted"
        meta["status_inferred"] = True
    return meta
