"""Where a non-finite value first appeared: forward, loss or backward (numpy only).

A Record writes NaN for "not measured", so a NaN alone is no evidence: a layer without a
bias has a NaN `bias_grad_norm` at every step, and a loss that was never logged is NaN
throughout. The evidence used is therefore:

- counts: `act_nonfinite` > 0 (forward), `grad_nonfinite` > 0 (backward), and where
  no count was taken, `act_all_finite` / `grad_all_finite` == 0 (from the sums);
- an infinite `loss`, `grad_norm`, `bias_grad_norm` or `delta_norm`;
- a NaN in one of those where the series had been measured at every recorded step (at
  least twice) and is never finite again: it went NaN for good, as a NaN does once it
  reaches the weights. A NaN in a series with gaps (a loss logged every 10th step) is
  taken as "not measured".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# Quantities whose non-finite value shows the backward pass went wrong at a layer.
_BACKWARD_NORMS = ("delta_norm", "bias_grad_norm", "grad_norm")
# Measurements in a row before a NaN counts: one alone may be a loss logged once.
_MIN_DENSE = 2


def went_nonfinite(x: np.ndarray) -> np.ndarray:
    """Mask of the entries of `x` that show a non-finite value, by the rules above.

    Args:
        x: array of shape (n_steps, n_columns).

    Returns:
        Boolean array of shape (n_steps, n_columns).
    """
    mask = np.isinf(x)
    for col in range(x.shape[1]):
        row = _went_nan(x[:, col])
        if row is not None:
            mask[row, col] = True
    return mask


def _went_nan(column: np.ndarray) -> int | None:
    """Row where a densely measured column turned NaN for good, if it did.

    Dense means measured at every recorded step from its first measurement on, at least
    twice: a loss logged every 10th step has gaps, and its NaNs stay "not measured".
    """
    measured = np.flatnonzero(~np.isnan(column))
    finite = np.flatnonzero(np.isfinite(column))
    if finite.size == 0 or finite[-1] + 1 >= len(column):
        return None
    end = finite[-1] + 1  # the first row of the NaN (or inf) tail
    dense = measured[measured < end]
    if len(dense) < _MIN_DENSE or dense[-1] - dense[0] + 1 != len(dense):
        return None
    return int(end) if np.isnan(column[end]) else None


def _count_positive(values: Mapping[str, np.ndarray], name: str, shape: tuple) -> np.ndarray:
    if name not in values:
        return np.zeros(shape, dtype=bool)
    return values[name] > 0  # NaN (not measured) compares False


def _flagged(values: Mapping[str, np.ndarray], prefix: str, shape: tuple) -> np.ndarray:
    """A positive PREFIX_nonfinite count or a PREFIX_all_finite of 0."""
    mask = _count_positive(values, f"{prefix}_nonfinite", shape)
    if f"{prefix}_all_finite" in values:
        mask = mask | (values[f"{prefix}_all_finite"] == 0)  # NaN (not measured): False
    return mask


def _backward_mask(values: Mapping[str, np.ndarray], shape: tuple) -> np.ndarray:
    mask = _flagged(values, "grad", shape)
    for name in _BACKWARD_NORMS:
        if name in values:
            mask = mask | went_nonfinite(values[name])
    return mask


def first_nonfinite(
    steps: np.ndarray,
    layers: Sequence[str],
    values: Mapping[str, np.ndarray],
    loss: np.ndarray,
    loss_bad: np.ndarray | None = None,
) -> dict[str, Any] | None:
    """The first step where anything was non-finite, and where it showed first.

    Args:
        steps: array of shape (n_steps,).
        layers: layer names in forward order, length n_layers.
        values: quantity -> array of shape (n_steps, n_layers); missing ones are skipped.
        loss: array of shape (n_steps,), NaN where not logged.
        loss_bad: where the caller knows which steps logged a non-finite loss (the probe
            does), that mask of shape (n_steps,); else it is inferred from `loss`.

    Returns:
        None when nothing was non-finite, else {"step", "layer", "where"}: "forward" with
        the first layer in forward order whose activations were non-finite; else "loss"
        (layer None); else "backward" with the first layer in backward order (the highest
        index) whose gradients were non-finite.
    """
    shape = (len(steps), len(layers))
    forward = _flagged(values, "act", shape)
    backward = _backward_mask(values, shape)
    if loss_bad is None:
        bad_loss = went_nonfinite(np.asarray(loss, dtype=np.float64).reshape(-1, 1))[:, 0]
    else:
        bad_loss = np.asarray(loss_bad, dtype=bool)
    bad_step = forward.any(axis=1) | bad_loss | backward.any(axis=1)
    if not bad_step.any():
        return None
    i = int(np.argmax(bad_step))
    step = int(steps[i])
    if forward[i].any():
        return {"step": step, "layer": layers[int(np.argmax(forward[i]))], "where": "forward"}
    if bad_loss[i]:
        return {"step": step, "layer": None, "where": "loss"}
    last = len(layers) - 1 - int(np.argmax(backward[i][::-1]))
    return {"step": step, "layer": layers[last], "where": "backward"}


def describe_first_nonfinite(found: dict) -> str:
    """`first_nonfinite`'s answer in words, for the warning the probes give once."""
    where = f"layer {found['layer']!r}" if found["layer"] else "the loss"
    return f"first non-finite value at step {found['step']}, {where} ({found['where']} pass)"
