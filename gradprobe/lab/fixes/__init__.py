"""Fix trials: from the findings, candidate remedies, each trained for a short budget with
the probe on over a few seeds, ranked by restored gradient flow.

    from gradprobe.lab.fixes import try_fixes
    result = try_fixes(build_model, data, loss_fn, steps=100, seeds=(0, 1))
    print(result)                  # the ranked table
    result.best.remedy             # e.g. "relu_he"

Submodules are imported on use; importing this package imports nothing heavy.
"""


def __getattr__(name: str):
    if name in ("try_fixes", "FixResult"):
        from gradprobe.lab.fixes import api

        return getattr(api, name)
    raise AttributeError(f"module 'gradprobe.lab.fixes' has no attribute {name!r}")
