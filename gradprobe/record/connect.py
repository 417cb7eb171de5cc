"""Opening metrics.sqlite: one WAL writer, any number of readers, even after a crash.

The writer uses WAL with synchronous=NORMAL: a commit appends to the -wal file without an
fsync, so it survives the process being killed (the OS keeps the written pages) though not
a power cut, and costs microseconds rather than an fsync's milliseconds.

A reader must never change the data and must work while the writer runs, after it exited
cleanly (no -wal, no -shm) and after it was killed (-wal and -shm left behind). A read-only
open (`mode=ro`) does that when it may create or open the -shm file; where it may not
(a read-only directory), fall back to a normal connection held to `query_only`, and last
to `immutable=1`, which is exact only when no -wal file holds uncheckpointed pages.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

# Seconds a connection waits on a lock before failing: readers only wait while a crashed
# writer's -wal index is rebuilt, which takes milliseconds.
_BUSY_TIMEOUT_S = 30.0
_PAGE_SIZE = 32768


def _connect(target: str, *, uri: bool) -> sqlite3.Connection:
    # isolation_level=None: transactions are begun and committed explicitly, so a
    # multi-statement read sees one snapshot and an append commits exactly once.
    # check_same_thread=False: the probe may flush from a background thread; SampleStore
    # serialises access with its own lock.
    return sqlite3.connect(
        target, uri=uri, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )


def open_writer(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) `path` for appending, in WAL mode."""
    conn = _connect(str(path), uri=False)
    try:
        # Only takes effect on a new file. 32 KiB pages make an append of 64 layers x 16
        # quantities x 50 steps 20% cheaper than 4 KiB ones (benchmarks/store_append.py).
        conn.execute(f"PRAGMA page_size={_PAGE_SIZE}")
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        conn.execute("PRAGMA synchronous=NORMAL")
    except sqlite3.DatabaseError as err:
        conn.close()
        raise ValueError(f"{path} is not a SQLite database gradprobe can write: {err}") from err
    if mode.lower() != "wal":
        conn.close()
        # Some network file systems cannot hold the -shm file that WAL needs.
        raise OSError(
            f"{path}: SQLite could not switch to WAL mode (got {mode!r}); "
            "put the run directory on a local file system"
        )
    return conn


def _open_ro(path: Path) -> sqlite3.Connection:
    """read-only open"""
    return _connect(path.resolve().as_uri() + "?mode=ro", uri=True)


def _open_query_only(path: Path) -> sqlite3.Connection:
    """normal open held to query_only"""
    conn = _connect(str(path), uri=False)
    conn.execute("PRAGMA query_only=ON")
    return conn


def _open_immutable(path: Path) -> sqlite3.Connection:
    """immutable open"""
    wal = path.with_name(path.name + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        raise sqlite3.OperationalError(f"{wal.name} holds pages an immutable open would miss")
    return _connect(path.resolve().as_uri() + "?immutable=1", uri=True)


_READERS: tuple[Callable[[Path], sqlite3.Connection], ...] = (
    _open_ro,
    _open_query_only,
    _open_immutable,
)


def open_reader(path: Path, readers=_READERS) -> sqlite3.Connection:
    """Open `path` for reading only, trying the ways described in the module docstring.

    Raises:
        FileNotFoundError: `path` does not exist.
        OSError: no way of opening worked; the message lists why each failed.
    """
    if not path.is_file():
        raise FileNotFoundError(f"no metrics database at {path}")
    errors = []
    for opener in readers:
        conn = None
        try:
            conn = opener(path)
            # sqlite3.connect is lazy: the first query is what finds a missing -shm.
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.Error as err:
            if conn is not None:
                conn.close()
            errors.append(f"{opener.__doc__}: {err}")
    raise OSError(f"cannot read {path}: " + "; ".join(errors))
