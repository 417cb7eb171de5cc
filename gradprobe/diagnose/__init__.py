"""Diagnosis: findings with layers, cause and fix from a Record; static lints on a model
and loss; `check` (one forward/backward at the current weights) and `gradcheck`.

Submodules are imported on use; importing this package imports nothing heavy.
"""

import sys
import types


class _DiagnosePackage(types.ModuleType):
    """This package, callable as `gradprobe.diagnose(record, ...)`.

    DESIGN.md names both the package `gradprobe.diagnose` and the function
    `gp.diagnose(record)`. Importing any submodule makes Python set the package as the
    attribute `gradprobe.diagnose`, so the package itself forwards calls to the function.
    """

    def __call__(self, record, thresholds=None, **overrides):
        from gradprobe.diagnose.diagnosis import diagnose

        return diagnose(record, thresholds, **overrides)


sys.modules[__name__].__class__ = _DiagnosePackage
