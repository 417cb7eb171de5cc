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
}

if TYPE_CHECKING:
    from gradprobe.attach import watch
    from gradprobe.probe.probe import Probe
    from gradprobe.record.load import load
    from gradprobe.record.record import Record

__all__ = ["Probe", "Record", "__version__", "load", "watch"]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gradprobe' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
