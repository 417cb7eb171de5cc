"""`Record`: what a run measured, as dense arrays of steps x layers, one per quantity."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gradprobe.stats.nonfinite import first_nonfinite


def _canonical_order() -> list[str]:
    # Imported here, not at the top: gradprobe/stats/__init__.py imports torch, and this
    # package's own imports stay numpy-only, so a reader need not pay for torch.
    from gradprobe.stats.quantities import LAYER_QUANTITIES

    return list(LAYER_QUANTITIES)


def shaped(array: Any, name: str, expected: tuple, dims: str, what: str) -> np.ndarray:
    """`array` as float64, checked to have the `expected` shape.

    Args:
        array: array-like.
        name: the quantity, for the error message.
        expected: the shape; a str entry (e.g. "k") matches any length.
        dims: the dimensions in words, e.g. "n_steps, n_layers", for the error message.
        what: what the array is ("quantity", "series"), for the error message.
    """
    out = np.asarray(array, dtype=np.float64)
    fits = out.ndim == len(expected) and all(
        isinstance(want, str) or want == got for want, got in zip(expected, out.shape)
    )
    if not fits:
        shown = "(" + ", ".join(map(str, expected)) + ("," if len(expected) == 1 else "") + ")"
        raise ValueError(f"{what} {name!r} has shape {out.shape}; expected {shown} ({dims})")
    return out


def _frozen(array: Any, name: str, expected: tuple, dims: str, what: str) -> np.ndarray:
    # A read-only copy: views of it are handed out, and numpy refuses to make a view of
    # a read-only array writeable again, so nobody can change a Record by accident.
    out = shaped(array, name, expected, dims, what).copy()
    out.setflags(write=False)
    return out


def check_steps(steps: Any) -> np.ndarray:
    """`steps` as a read-only int64 array of shape (n_steps,), checked strictly increasing."""
    out = np.asarray(steps)
    if out.size == 0:
        out = out.astype(np.int64).reshape(0)
    if out.ndim != 1 or not np.issubdtype(out.dtype, np.integer):
        raise ValueError(f"steps must be a 1-d array of integers; got {out.dtype} {out.shape}")
    out = out.astype(np.int64)
    bad = np.flatnonzero(np.diff(out) <= 0)
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"steps must be strictly increasing; steps[{i}]={out[i]} is followed by "
            f"steps[{i + 1}]={out[i + 1]}"
        )
    out.setflags(write=False)
    return out


def _check_layer_info(layers: list[str], layer_info: Sequence[Mapping] | None) -> list[dict]:
    if layer_info is None:
        return [{"name": name, "type": None} for name in layers]
    info = [dict(entry) for entry in layer_info]
    names = [entry.get("name") for entry in info]
    if names != layers:
        raise ValueError(f"layer_info names {names} do not match layers {layers}")
    for entry in info:
        entry.setdefault("type", None)
    return info


def _check_disjoint(*groups: Mapping) -> None:
    # One name, one meaning: rec[q], rec.step_values[q] and rec.series[q] never collide.
    seen: set[str] = set()
    for group in groups:
        clash = seen & set(group)
        if clash:
            raise ValueError(f"quantities {sorted(clash)} given more than once")
        seen |= set(group)


class Record:
    """What a run measured: one array of shape (n_steps, n_layers) per quantity.

    Args:
        layers: module names in forward order, length n_layers.
        steps: array-like of int of shape (n_steps,), the recorded step numbers, strictly
            increasing.
        values: mapping quantity -> array of shape (n_steps, n_layers); NaN where the
            quantity was not measured.
        step_values: mapping quantity -> array of shape (n_steps,), e.g. `loss`.
        layer_info: one dict per layer with at least "name" and "type".
        meta: the run's run.json contents.
        series: mapping quantity -> array of shape (n_steps, n_layers, k) for
            vector-valued quantities (histogram bins, per-time-step deltas).

    All arrays handed out are read-only views: a Record never changes once built.
    """

    # A Record is not a sequence of steps: without this, list(rec) would call
    # rec[0] and fail with a confusing KeyError.
    __iter__ = None

    def __init__(
        self,
        layers: Sequence[str],
        steps: Any,
        values: Mapping[str, Any],
        *,
        step_values: Mapping[str, Any] | None = None,
        layer_info: Sequence[Mapping] | None = None,
        meta: Mapping[str, Any] | None = None,
        series: Mapping[str, Any] | None = None,
    ) -> None:
        self._layers = [str(name) for name in layers]
        if len(set(self._layers)) != len(self._layers):
            raise ValueError(f"layer names must be unique; got {self._layers}")
        self._steps = check_steps(steps)
        shape = (len(self._steps), len(self._layers))
        self._values = {
            q: _frozen(a, q, shape, "n_steps, n_layers", "quantity") for q, a in values.items()
        }
        self._step_values = {
            q: _frozen(a, q, shape[:1], "n_steps,", "step quantity")
            for q, a in (step_values or {}).items()
        }
        self._series = {
            q: _frozen(a, q, (*shape, "k"), "n_steps, n_layers, k", "series")
            for q, a in (series or {}).items()
        }
        _check_disjoint(self._values, self._step_values, self._series)
        self._layer_info = _check_layer_info(self._layers, layer_info)
        self._meta = copy.deepcopy(dict(meta or {}))

    @property
    def layers(self) -> list[str]:
        """Module names in forward order."""
        return list(self._layers)

    @property
    def steps(self) -> np.ndarray:
        """Array of shape (n_steps,): the recorded step numbers (int64)."""
        return self._steps.view()

    @property
    def quantities(self) -> list[str]:
        """Per-layer quantities held: the canonical ones in their order, then others sorted."""
        canonical = _canonical_order()
        known = [q for q in canonical if q in self._values]
        return known + sorted(q for q in self._values if q not in canonical)

    @property
    def step_values(self) -> dict[str, np.ndarray]:
        """Per-step quantities: name -> array of shape (n_steps,)."""
        return {q: a.view() for q, a in self._step_values.items()}

    @property
    def series(self) -> dict[str, np.ndarray]:
        """Vector-valued quantities: name -> array of shape (n_steps, n_layers, k)."""
        return {q: a.view() for q, a in self._series.items()}

    @property
    def layer_info(self) -> list[dict]:
        """One dict per layer: "name", "type" and what the probe knew about it."""
        return copy.deepcopy(self._layer_info)

    @property
    def meta(self) -> dict[str, Any]:
        """The run's run.json contents (a copy)."""
        return copy.deepcopy(self._meta)

    @property
    def status(self) -> str | None:
        """running, done, failed or interrupted; None when the record has no run.json."""
        return self._meta.get("status")

    @property
    def loss(self) -> np.ndarray:
        """Array of shape (n_steps,): the logged loss, NaN where none was logged."""
        return self._step_value("loss")

    @property
    def global_grad_norm(self) -> np.ndarray:
        """Array of shape (n_steps,): L2 norm of all recorded gradients together."""
        return self._step_value("global_grad_norm")

    def _step_value(self, name: str) -> np.ndarray:
        if name in self._step_values:
            return self._step_values[name].view()
        missing = np.full(len(self._steps), np.nan)
        missing.setflags(write=False)
        return missing

    def __getitem__(self, quantity: str) -> np.ndarray:
        """Array of shape (n_steps, n_layers) for a per-layer quantity."""
        try:
            return self._values[quantity].view()
        except KeyError:
            raise KeyError(self._unknown_quantity(quantity)) from None

    def _unknown_quantity(self, quantity: str) -> str:
        where = ""
        if quantity in self._step_values:
            where = f"; it is a per-step quantity: use rec.step_values[{quantity!r}]"
        elif quantity in self._series:
            where = f"; it is a series: use rec.series[{quantity!r}]"
        return f"no quantity {quantity!r} in this record{where}; available: {self.quantities}"

    def __contains__(self, quantity: object) -> bool:
        return quantity in self._values

    def __len__(self) -> int:
        return len(self._steps)

    def layer(self, name: str) -> dict[str, np.ndarray]:
        """Every per-layer quantity of one layer: name -> array of shape (n_steps,)."""
        if name not in self._layers:
            raise KeyError(f"no layer {name!r} in this record; layers: {self._layers}")
        i = self._layers.index(name)
        return {q: self._values[q][:, i] for q in self.quantities}

    def first_nonfinite(self) -> dict[str, Any] | None:
        """Where a non-finite value first appeared; see `gradprobe.stats.nonfinite`.

        Returns:
            None, or {"step": int, "layer": str | None, "where": "forward" | "loss" |
            "backward"}.
        """
        return first_nonfinite(self._steps, self._layers, self._values, self.loss)

    def __repr__(self) -> str:
        return (
            f"Record({len(self._layers)} layers x {len(self._steps)} steps, "
            f"{len(self._values)} quantities, status={self.status!r})"
        )
