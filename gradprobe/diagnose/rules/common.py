"""What the rules share: which steps to read, layer names as a range, feature counts."""

from __future__ import annotations

import math
import warnings

import numpy as np

from gradprobe.record.record import Record

# Output features per weight row for layer types whose first weight stacks several
# blocks: LSTM has 4 gates, GRU 3 (torch.nn.LSTM / GRU weight_ih_l0 is (G*H, in)).
_GATES = {"LSTM": 4, "LSTMCell": 4, "GRU": 3, "GRUCell": 3}
# Types whose output features are the weight's second axis: Embedding (num, dim),
# MultiheadAttention in_proj_weight (3E, E), ConvTranspose (in, out / groups, ...).
_SECOND_AXIS = ("Embedding", "EmbeddingBag", "MultiheadAttention", "ConvTranspose")
NORM_TYPES = ("BatchNorm", "LayerNorm", "GroupNorm", "InstanceNorm", "RMSNorm")


def healthy_rows(rec: Record) -> int:
    """Rows before the first non-finite step: the rules other than `nonfinite` read these."""
    bad = rec.first_nonfinite()
    if bad is None:
        return len(rec)
    return int(np.searchsorted(rec.steps, bad["step"]))


def measured_rows(x: np.ndarray, limit: int) -> np.ndarray:
    """Indices of rows < limit where `x` (shape (n_steps, ...)) has any finite value."""
    x = np.asarray(x)[:limit]
    flat = np.isfinite(x.reshape(len(x), -1)).any(axis=1) if len(x) else np.zeros(0, bool)
    return np.flatnonzero(flat)


def windows(rows: np.ndarray, size: int) -> list[tuple[str, np.ndarray]]:
    """("early", first `size` rows) and ("late", last `size` rows), the latter only when
    it does not overlap the former."""
    if len(rows) == 0:
        return []
    out = [("early", rows[:size])]
    if len(rows) >= 2 * size:
        out.append(("late", rows[-size:]))
    return out


def layer_range(names: list[str]) -> str:
    """ "fc1..fc4" for a range of layers in forward order; "fc1" for one."""
    if len(names) == 1:
        return names[0]
    return f"{names[0]}..{names[-1]}"


def feature_count(info: dict) -> int | None:
    """Output features N of a layer from its layer_info weight shapes; None if unknown."""
    shapes = info.get("weight_shapes") or []
    if not shapes or not shapes[0]:
        return None
    shape, kind = shapes[0], str(info.get("type") or "")
    if kind.startswith(_SECOND_AXIS) and len(shape) >= 2:
        return int(shape[1])
    return max(int(shape[0]) // _GATES.get(kind, 1), 1)


# layer_info "activation" holds the activation module's class name (probe/activations.py);
# the rules need its family: saturating (sigmoid, tanh) or dying (relu).
_ACTIVATION_KINDS = {"sigmoid": "sigmoid", "tanh": "tanh", "relu": "relu", "relu6": "relu"}


def activation_kind(info: dict) -> str | None:
    """ "sigmoid", "tanh", "relu" (ReLU, ReLU6), another lower-case name, or None."""
    name = info.get("activation")
    return None if name is None else _ACTIVATION_KINDS.get(str(name).lower(), str(name).lower())


def feeds_batchnorm(infos: list[dict], col: int) -> bool:
    """True when layer `col` is followed directly by a BatchNorm: in training mode its
    output gradient summed over the batch is 0 by construction (BatchNorm subtracts the
    batch mean of the gradient), so its delta_norm says nothing about the signal."""
    if col + 1 >= len(infos) or infos[col].get("activation") is not None:
        return False
    return str(infos[col + 1].get("type") or "").startswith("BatchNorm") and not is_norm(infos[col])


def is_norm(info: dict) -> bool:
    """True for normalisation layers (BatchNorm, LayerNorm, GroupNorm, ...) and subclasses
    whose name says so (e.g. a user's FusedLayerNorm)."""
    kind = str(info.get("type") or "")
    return kind.startswith(NORM_TYPES) or "Norm" in kind


def fmt(x: float) -> str:
    """A ratio in 2 significant digits: "0.21", "1.5e-04", "3.2e+03"."""
    if not math.isfinite(x):
        return str(x)
    if x != 0 and (abs(x) < 1e-2 or abs(x) >= 1e3):
        return f"{x:.1e}"
    return f"{x:.2g}"


def nanmedian(x: np.ndarray, axis: int | None = None) -> np.ndarray:
    """Median ignoring NaN; NaN, without a warning, where nothing was measured."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(np.asarray(x, dtype=np.float64), axis=axis)


def window_median(x: np.ndarray, rows: np.ndarray, limit: int) -> np.ndarray | float:
    """Median of `x` (shape (n_steps, ...)) over the window's rows, ignoring NaN.

    Quantities measured only on detail steps (every 10th by default) may have no value in
    a short window; their median is then taken over the measured rows nearest to it
    (the next ones after the window, else the last ones before it) among rows < limit.
    """
    x = np.asarray(x, dtype=np.float64)
    inside = x[rows]
    if np.isfinite(inside).any():
        return nanmedian(inside, axis=0)
    measured = measured_rows(x, limit)
    if measured.size == 0:
        return nanmedian(inside, axis=0)
    after = measured[measured >= rows[0]]
    near = after[: len(rows)] if after.size else measured[-len(rows) :]
    return nanmedian(x[near], axis=0)
