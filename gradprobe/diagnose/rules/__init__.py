"""The diagnosis rules, one module per family; each is `rule(record, thresholds) -> list[Finding]`.

- depth: vanishing / exploding gradient along depth, with cause attribution (cause).
- time: the same along time for recurrent layers (axis "time").
- nonfinite: the first NaN/Inf, where and why.
- loss: divergence and plateau.
- update: update ratio too large or too small.
- units: saturated and dead units.
"""
