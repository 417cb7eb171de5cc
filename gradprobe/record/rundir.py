"""`RunDir`: a run's directory: run.json, metrics.sqlite and what reports add later.

runs/<name>/run.json  metrics.sqlite  findings.json  report.html  tb/
"""

from __future__ import annotations

import copy
import dataclasses
import os
import shutil
import tempfile
from pathlib import Path
from socket import gethostname
from typing import Any

from gradprobe.record.runjson import (
    check_status,
    new_meta,
    now,
    read_raw,
    read_run_json,
    write_json,
)
from gradprobe.record.store import SampleStore

# What overwrite=True deletes; anything else a user keeps in the directory stays.
_FILES = (
    "run.json",
    "metrics.sqlite",
    "metrics.sqlite-wal",
    "metrics.sqlite-shm",
    "findings.json",
    "report.html",
)
_DIRS = ("tb",)


class RunExistsError(FileExistsError):
    """The directory already holds a run, and neither overwrite nor resume was asked."""


def _make_dir(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(
            f"cannot use {path} as a run directory: it is a file; pass a new directory or "
            "an existing run directory"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise type(err)(
            f"cannot create run directory {path}: {err.strerror or err}; pass a directory "
            "that can be created and written"
        ) from err


def _check_writable(path: Path) -> None:
    # Try it rather than ask os.access, which says yes to root on a read-only mount.
    try:
        fd, probe = tempfile.mkstemp(dir=path, prefix=".gradprobe-write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise PermissionError(
            f"run directory {path} is not writable ({err.strerror or err}); pass a "
            "directory you can write to"
        ) from err


def _describe_existing(path: Path) -> str:
    if not (path / "run.json").exists():
        return "a metrics.sqlite without run.json"
    try:
        meta = read_run_json(path)
    except (OSError, ValueError) as err:
        return f"an unreadable run.json ({err})"
    return f"a run with status {meta.get('status')!r} and {meta.get('n_steps', 0)} steps"


def _remove_artefacts(path: Path) -> None:
    for name in _FILES:
        (path / name).unlink(missing_ok=True)
    for name in _DIRS:
        shutil.rmtree(path / name, ignore_errors=True)


def _resumed_meta(path: Path, config: Any) -> dict[str, Any]:
    meta = read_raw(path / "run.json")
    # read_run_json says "running" only for a live writer on this host, or for one on
    # another host that cannot be checked: resuming there is the user's call.
    live = read_run_json(path)["status"] == "running" and meta.get("host") == gethostname()
    if live and meta.get("pid") != os.getpid():
        raise RunExistsError(
            f"{path} is being written by process {meta.get('pid')} on this host; two "
            "writers would corrupt it: wait for it to end or choose another directory"
        )
    fresh = new_meta(meta.get("name", path.name), meta.get("config") if config is None else config)
    kept = {k: meta[k] for k in ("start", "device", "last_flush", "n_steps") if k in meta}
    return {**meta, **fresh, **kept, "resumed": [*meta.get("resumed", []), now()]}


class RunDir:
    """A run's directory, owned by the process writing the run.

    Use `RunDir.create`; `with RunDir.create(...) as run:` sets the final status on exit
    (done, failed with the error, or interrupted on Ctrl-C) unless it was set already.
    """

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        self.path = path
        self._meta = meta
        self._store: SampleStore | None = None

    @classmethod
    def create(
        cls,
        path: str | Path,
        *,
        config: Any = None,
        overwrite: bool = False,
        resume: bool = False,
    ) -> RunDir:
        """Make (or reopen) a run directory and write its run.json with status running.

        Args:
            path: the directory; parents are created.
            config: JSON-able settings of the run (a dataclass is turned into a dict).
                On resume, None keeps the stored config and anything else replaces it.
            overwrite: delete a previous run's files (only those gradprobe writes).
            resume: keep a previous run's data and append to it; with no previous run
                this starts a new one.

        Raises:
            RunExistsError: a run is there and neither overwrite nor resume was given,
                or (resume) its writer is still alive.
            NotADirectoryError, PermissionError, OSError: the path cannot hold a run.
            ValueError: overwrite and resume together.
        """
        if overwrite and resume:
            raise ValueError("pass overwrite=True or resume=True, not both")
        path = Path(path)
        if dataclasses.is_dataclass(config) and not isinstance(config, type):
            config = dataclasses.asdict(config)
        _make_dir(path)
        _check_writable(path)
        exists = (path / "run.json").exists() or (path / "metrics.sqlite").exists()
        if exists and not (overwrite or resume):
            raise RunExistsError(
                f"{path} already holds {_describe_existing(path)}; pass overwrite=True to "
                "replace it or resume=True to continue it, or choose another directory"
            )
        if overwrite:
            _remove_artefacts(path)
        if resume and (path / "run.json").exists():
            meta = _resumed_meta(path, config)
        else:
            meta = new_meta(path.resolve().name, config)
        run = cls(path, meta)
        run._write()
        return run

    def _write(self) -> None:
        write_json(self.path / "run.json", self._meta)

    @property
    def meta(self) -> dict[str, Any]:
        """The contents of run.json (a copy)."""
        return copy.deepcopy(self._meta)

    @property
    def status(self) -> str:
        """running, done, failed or interrupted."""
        return self._meta["status"]

    @property
    def store(self) -> SampleStore:
        """The SampleStore of metrics.sqlite, created at first use."""
        if self._store is None:
            self._store = SampleStore(self.path / "metrics.sqlite")
        return self._store

    def set_status(self, status: str, *, error: str | BaseException | None = None) -> None:
        """Set the status (and the end time, unless running) and write run.json."""
        self._meta["status"] = check_status(status)
        self._meta["error"] = None if error is None else str(error)
        self._meta["end"] = None if status == "running" else now()
        self._write()

    def update_meta(self, **fields: Any) -> None:
        """Set fields of run.json (e.g. device="cuda:0") and write it."""
        if "status" in fields:
            check_status(fields["status"])
        self._meta.update(fields)
        self._write()

    def mark_flush(self, n_steps: int) -> None:
        """Note in run.json that a flush committed, and how many steps are stored."""
        self._meta["last_flush"] = now()
        self._meta["n_steps"] = int(n_steps)
        self._write()

    def close(self) -> None:
        """Close metrics.sqlite (if opened); run.json is already on disk."""
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        if self.status == "running":
            if exc_type is None:
                self.set_status("done")
            elif issubclass(exc_type, KeyboardInterrupt):
                self.set_status("interrupted", error="KeyboardInterrupt")
            else:
                self.set_status("failed", error=f"{exc_type.__name__}: {exc}")
        self.close()

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r}, status={self.status!r})"
