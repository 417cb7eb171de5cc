"""Pure tensor maths: per-layer sufficient statistics, fused over layers, mergeable.

Names load on first use, so `gradprobe.stats.quantities` (the vocabulary, no torch) can
be read by light tools such as the command line without importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "SATURATION": "activation",
    "activation_stats": "activation",
    "STEP_SLOTS": "derivation",
    "derive": "derivation",
    "derive_steps": "derivation",
    "LAYER_QUANTITIES": "quantities",
    "STEP_QUANTITIES": "quantities",
    "SERIES_QUANTITIES": "quantities",
    "N_SLOTS": "slots",
    "SLOT": "slots",
    "SLOTS": "slots",
    "all_reduce": "slots",
    "merge": "slots",
    "new_state": "slots",
    "diff_stats": "tensor_stats",
    "param_stats": "tensor_stats",
    "sumsq": "tensor_stats",
    "Workspace": "workspace",
}

if TYPE_CHECKING:
    from gradprobe.stats.activation import SATURATION, activation_stats
    from gradprobe.stats.derivation import STEP_SLOTS, derive, derive_steps
    from gradprobe.stats.quantities import LAYER_QUANTITIES, SERIES_QUANTITIES, STEP_QUANTITIES
    from gradprobe.stats.slots import N_SLOTS, SLOT, SLOTS, all_reduce, merge, new_state
    from gradprobe.stats.tensor_stats import diff_stats, param_stats, sumsq
    from gradprobe.stats.workspace import Workspace

__all__ = [
    "LAYER_QUANTITIES",
    "N_SLOTS",
    "SATURATION",
    "SERIES_QUANTITIES",
    "SLOT",
    "SLOTS",
    "STEP_QUANTITIES",
    "STEP_SLOTS",
    "Workspace",
    "activation_stats",
    "all_reduce",
    "derive",
    "derive_steps",
    "diff_stats",
    "merge",
    "new_state",
    "param_stats",
    "sumsq",
]
assert sorted(__all__) == sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        module = importlib.import_module(f"gradprobe.stats.{_EXPORTS[name]}")
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gradprobe.stats' has no attribute {name!r}")
