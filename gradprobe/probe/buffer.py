"""Device-side ring of step states, drained to the host once per flush."""

from __future__ import annotations

import numpy as np
import torch

from gradprobe.stats import STEP_SLOTS
from gradprobe.stats.slots import init_row


class StepBuffer:
    """Holds the states of up to `capacity` recorded steps on the device.

    The state of the step being recorded is a row of the ring; finished rows wait there
    until drain() copies them all to the host in one transfer.
    """

    def __init__(self, n_layers: int, capacity: int, device: torch.device) -> None:
        self.capacity = capacity
        self.device = device
        self._init = init_row(device)
        width = n_layers * self._init.numel()
        # one block per row, the layer states then the step state, so a flush is one copy
        self._rows = torch.zeros(
            capacity, width + len(STEP_SLOTS), dtype=torch.float64, device=device
        )
        self.states = self._rows[:, :width].view(capacity, n_layers, -1)  # (cap, L, N_SLOTS)
        self.step_states = self._rows[:, width:]  # (capacity, len(STEP_SLOTS))
        self.states.copy_(self._init.expand_as(self.states))
        self.steps: list[int] = []

    @property
    def full(self) -> bool:
        return len(self.steps) >= self.capacity

    @property
    def rows(self) -> torch.Tensor:
        """The ring as one block, shape (capacity, n_layers * N_SLOTS + len(STEP_SLOTS)).

        Row i holds the layer states of the i-th step (layer by layer), then its step
        state: what a distributed flush reduces in one collective.
        """
        return self._rows

    def current(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Views of the state (L, N_SLOTS) and step state of the step being recorded."""
        i = len(self.steps)
        return self.states[i], self.step_states[i]

    def last(self) -> tuple[int, torch.Tensor] | None:
        """(step, step state view) of the last committed step still in the ring."""
        if not self.steps:
            return None
        return self.steps[-1], self.step_states[len(self.steps) - 1]

    def commit(self, step: int) -> None:
        """Close the current row as step `step`; the next row becomes current (reset)."""
        self.steps.append(step)
        if not self.full:
            self._reset(len(self.steps))

    def discard(self) -> None:
        """Reset the row of the step being recorded (a step that is not kept)."""
        if not self.full:
            self._reset(len(self.steps))

    def _reset(self, i: int) -> None:
        self.states[i].copy_(self._init.expand_as(self.states[i]))
        self.step_states[i].zero_()

    def drain(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Copy the committed rows to the host (one transfer) and empty the ring.

        Returns:
            steps (k,) int64, states (k, n_layers, N_SLOTS), step states (k, n_step_slots).
        """
        k = len(self.steps)
        steps = np.asarray(self.steps, dtype=np.int64)
        rows = self._rows[:k].to("cpu", copy=True).numpy()
        width = self.states[0].numel()
        states = rows[:, :width].reshape(k, *self.states.shape[1:])
        step_states = rows[:, width:]
        self.steps = []
        self._reset(0)
        return steps, states, step_states

    def __repr__(self) -> str:
        shape = tuple(self.states.shape[1:])
        return f"StepBuffer({len(self.steps)}/{self.capacity} steps of {shape} on {self.device})"


class VectorRing:
    """Per recorded step, width-sized vectors of some layers, kept on the device to a flush.

    Under torch.distributed the probe keeps here what no norm or count can stand for
    until the ranks are reduced: the batch-summed output gradient of hooked layers
    (kind "delta", shape (F,)) and which units were active (kind "alive", (F,) of 0/1).
    Row i belongs to the StepBuffer's row i. Segments (kind, layer index, offset, width)
    are laid out in order of first appearance and kept across flushes, so ranks running
    the same model agree on the layout.

    Args:
        capacity: rows, as the StepBuffer's.
        device: where the ring lives.
    """

    def __init__(self, capacity: int, device: torch.device) -> None:
        self.data = torch.zeros(capacity, 0, dtype=torch.float64, device=device)
        self.segments: list[tuple[str, int, int, int]] = []  # (kind, layer, offset, width)
        self._placed: dict[tuple[str, int], tuple[int, int]] = {}  # -> (offset, width)
        self._index: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def width(self) -> int:
        return self.data.shape[1]

    def put(
        self, row: int, kind: str, vectors: dict[int, torch.Tensor], scale=None
    ) -> torch.Tensor:
        """Write layer index -> vector (F,) into row `row`; returns the layer indices.

        Args:
            scale: None, or a factor (float or 0-d tensor on the ring's device) that
                multiplies every value (1 / the loss scale of hooked gradients).
        """
        key = (kind, tuple(vectors), tuple(v.numel() for v in vectors.values()))
        if key not in self._index:
            self._index[key] = self._place(kind, vectors)
        columns, layers = self._index[key]
        values = torch.cat([v.reshape(-1) for v in vectors.values()])
        values = values.to(self.data.device, torch.float64)
        self.data[row].index_copy_(0, columns, values if scale is None else values * scale)
        return layers

    def _place(self, kind: str, vectors: dict[int, torch.Tensor]) -> tuple:
        """Columns of the vectors in the ring (new segments appended) and their layers."""
        columns = []
        for index, v in vectors.items():
            if (kind, index) not in self._placed:
                self._placed[kind, index] = (self.width, v.numel())
                self.segments.append((kind, index, self.width, v.numel()))
                grown = self.data.new_zeros(self.data.shape[0], self.width + v.numel())
                grown[:, : self.width] = self.data
                self.data = grown
            offset, width = self._placed[kind, index]
            if width != v.numel():
                raise ValueError(
                    f"layer {index}'s {kind} vector has {v.numel()} elements; earlier steps "
                    f"had {width}: a layer's number of units must not change"
                )
            columns.append(torch.arange(offset, offset + width))
        device = self.data.device
        return torch.cat(columns).to(device), torch.tensor(list(vectors), device=device)

    def layout(self, kind: str) -> tuple[torch.Tensor, ...]:
        """Where the segments of one kind are, for per-segment sums over the ring's rows.

        Returns:
            columns (W_kind,) of the ring, owner (W_kind,) the segment number of each,
            layers (S,) the layer index of each segment, widths (S,) float64.
        """
        segments = [(i, o, w) for kd, i, o, w in self.segments if kd == kind]
        key = (kind, len(self.segments))
        if key not in self._index:
            device = self.data.device
            self._index[key] = (
                torch.cat([torch.arange(o, o + w) for _, o, w in segments]).to(device),
                torch.cat([torch.full((w,), j) for j, (_, _, w) in enumerate(segments)]).to(device),
                torch.tensor([i for i, _, _ in segments], device=device),
                torch.tensor([float(w) for _, _, w in segments], dtype=torch.float64).to(device),
            )
        return self._index[key]

    def __repr__(self) -> str:
        return (
            f"VectorRing({len(self.segments)} segments, width {self.width}, "
            f"{self.data.shape[0]} rows on {self.data.device})"
        )
