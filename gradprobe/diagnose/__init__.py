"""Diagnosis: findings with layers, cause and fix from a Record; static lints on a model
and loss; `check` (one forward/backward at the current weights) and `gradcheck`.

Submodules are imported on use; importing this package imports nothing heavy.
"""
