"""gradprobe: show, diagnose and fix vanishing and exploding gradients.

    probe = gradprobe.watch(model, optimizer=opt)   # per-layer gradient flow, every step
    rec = probe.record()                             # a Record: steps x layers x quantities
    rec = gradprobe.load("runs/exp1")                # the same, from a run directory

`import gradprobe` stays light: its names load on first use, and plotting, reports and
the command line are never imported by it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from gradprobe._version import __version__

# public name -> module that defines it (PEP 562 lazy attributes)
_EXPORTS = {
    "watch": "gradprobe.attach",
    "Probe": "gradprobe.probe.probe",
    "Record": "gradprobe.record.record",
    "load": "gradprobe.record.load",
    "Finding": "gradprobe.diagnose.finding",
    "diagnose": "gradprobe.diagnose",  # the package, callable: see diagnose/__init__.py
    "check": "gradprobe.diagnose.check",
    "gradcheck": "gradprobe.diagnose.gradcheck",
    "predict": "gradprobe.theory.predict",
    "try_fixes": "gradprobe.lab.fixes.api",
    "DistributedError": "gradprobe.probe.distributed",
}

if TYPE_CHECKING:
    from gradprobe import diagnose
    from gradprobe.attach import watch
    from gradprobe.diagnose.check import check
    from gradprobe.diagnose.finding import Finding
    from gradprobe.diagnose.gradcheck import gradcheck
    from gradprobe.lab.fixes.api import try_fixes
    from gradprobe.probe.distributed import DistributedError
    from gradprobe.probe.probe import Probe
    from gradprobe.record.load import load
    from gradprobe.record.record import Record
    from gradprobe.theory.predict import predict

__all__ = [
    "DistributedError",
    "Finding",
    "Probe",
    "Record",
    "__version__",
    "check",
    "diagnose",
    "gradcheck",
    "load",
    "predict",
    "try_fixes",
    "watch",
]


def __getattr__(name: str):
    if name in _EXPORTS:
        module = importlib.import_module(_EXPORTS[name])
        value = module if module.__name__ == f"gradprobe.{name}" else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gradprobe' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
