"""What a run recorded, on disk and in memory: `Record`, the run directory, `load`.

Imports numpy and the standard library only; never torch.
"""

from gradprobe.record.load import load
from gradprobe.record.record import Record
from gradprobe.record.rundir import RunDir, RunExistsError, read_run_json
from gradprobe.record.store import SampleStore

__all__ = ["Record", "RunDir", "RunExistsError", "SampleStore", "load", "read_run_json"]
