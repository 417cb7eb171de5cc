"""`load`: a Record back from a run directory, finished, crashed or still running."""

from __future__ import annotations

from pathlib import Path

from gradprobe.record.record import Record
from gradprobe.record.runjson import read_run_json
from gradprobe.record.store import SampleStore

# How many entries of a wrong directory an error message lists.
_SHOWN = 8


def _contents(path: Path) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
    if not names:
        return "it is empty"
    more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return "it contains " + ", ".join(names[:_SHOWN]) + more


def _check_run_dir(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"no run directory at {path}")
    if not path.is_dir():
        raise NotADirectoryError(
            f"{path} is a file; pass the run directory that holds run.json "
            f"(here perhaps {path.parent})"
        )
    if not (path / "run.json").is_file():
        raise FileNotFoundError(
            f"{path} is not a gradprobe run directory: it has no run.json ({_contents(path)})"
        )


def load(run_dir: str | Path) -> Record:
    """Read a run directory into a Record.

    Works while the run is being written (a consistent prefix of its flushes) and after
    it was killed (status "interrupted", every committed flush). A run killed before its
    first flush gives a Record with no steps and no layers.

    Args:
        run_dir: the directory holding run.json and metrics.sqlite.

    Raises:
        FileNotFoundError: no such directory, or it holds no run.json.
        NotADirectoryError: `run_dir` is a file.
    """
    path = Path(run_dir)
    _check_run_dir(path)
    meta = read_run_json(path)
    database = path / "metrics.sqlite"
    if not database.is_file():
        return Record([], [], {}, meta=meta)
    with SampleStore(database, readonly=True) as store:
        return store.read(meta=meta)
