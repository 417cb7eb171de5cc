"""Callbacks that attach the probe inside training frameworks (extras, imported on demand).

    from gradprobe.integrations import GradprobeCallback          # Lightning
    from gradprobe.integrations import GradprobeTrainerCallback   # Hugging Face Trainer

Importing this package imports neither lightning nor transformers; each name loads its
framework on first use, and says how to install it when it is missing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# public name -> (module defining it, the framework it needs, the extra that installs it)
_EXPORTS = {
    "GradprobeCallback": ("gradprobe.integrations.lightning", "lightning", "lightning"),
    "GradprobeTrainerCallback": (
        "gradprobe.integrations.huggingface",
        "transformers",
        "transformers",
    ),
}

if TYPE_CHECKING:
    from gradprobe.integrations.huggingface import GradprobeTrainerCallback
    from gradprobe.integrations.lightning import GradprobeCallback

__all__ = ["GradprobeCallback", "GradprobeTrainerCallback"]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'gradprobe.integrations' has no attribute {name!r}")
    module_name, framework, extra = _EXPORTS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name is None or err.name.split(".")[0] != framework:
            raise
        raise ImportError(
            f"gradprobe.integrations.{name} needs {framework}, which is not installed: "
            f'pip install "gradprobe[{extra}]"'
        ) from err
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
