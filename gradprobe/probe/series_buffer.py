"""Device-side ring of per-step vectors (a series), drained to the host once per flush."""

from __future__ import annotations

import math

import numpy as np
import torch


class SeriesBuffer:
    """Per recorded step, one vector per layer that has one, NaN-padded to the longest.

    Rows are aligned with the StepBuffer's: the vectors of the step recorded in its row i
    are put at row i. Only the layers given hold a row on the device; the others are NaN
    when drained. The width grows to the longest vector seen so far and never shrinks.

    Args:
        name: the series' name in a Record (e.g. "delta_norm_t").
        capacity: rows, as the StepBuffer's.
        layers: the layer indices (state rows) that may have a vector.
        device: where the ring lives.
    """

    def __init__(self, name: str, capacity: int, layers: list[int], device) -> None:
        self.name = name
        self._row = {index: r for r, index in enumerate(layers)}
        self.data = torch.full(  # (capacity, n_series_layers, width)
            (capacity, len(layers), 0), math.nan, dtype=torch.float64, device=device
        )

    @property
    def width(self) -> int:
        return self.data.shape[2]

    def put(self, i: int, vectors: dict[int, torch.Tensor]) -> None:
        """Write the step in row i: layer index -> array of shape (T,)."""
        if not vectors:
            return
        self._grow(max(v.shape[0] for v in vectors.values()))
        for index, v in vectors.items():
            self.data[i, self._row[index], : v.shape[0]] = v

    def _grow(self, width: int) -> None:
        if width <= self.width:
            return
        grown = self.data.new_full((*self.data.shape[:2], width), math.nan)
        grown[:, :, : self.width] = self.data
        self.data = grown

    def drain(self, k: int, order: list[int]) -> np.ndarray | None:
        """The first k rows on the host (one transfer), columns in `order`; resets them.

        Args:
            k: rows committed since the last drain.
            order: the Record's layer order, as layer indices.

        Returns:
            array of shape (k, len(order), width), NaN where nothing was measured; None
            while nothing was ever measured (width 0).
        """
        if self.width == 0:
            return None
        host = self.data[:k].to("cpu", copy=True).numpy()
        self.data[:k].fill_(math.nan)
        out = np.full((k, len(order), self.width), np.nan)
        for column, index in enumerate(order):
            if index in self._row:
                out[:, column] = host[:, self._row[index]]
        return out

    def __repr__(self) -> str:
        return (
            f"SeriesBuffer({self.name!r}, {len(self._row)} layers x width {self.width}, "
            f"{self.data.shape[0]} rows on {self.data.device})"
        )
