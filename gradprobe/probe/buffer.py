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
