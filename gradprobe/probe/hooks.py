"""Module hooks that can be switched off between recorded steps and on again.

A module with any forward hook leaves nn.Module's fast call path: on this CPU that costs
~3.5 us per module call even when the hook returns at once (benchmarks/overhead.py,
depth sweep), 10% of the step of a 256-layer MLP of width 32. With every=10 nine steps
in ten record nothing, so the probe takes its hooks out of the modules' hook dicts for
those steps (the modules are back on the fast path) and puts them back, in their
original order, before the next recorded step. Nothing is re-registered: the handles
stay valid and remove() works in either state.
"""

from __future__ import annotations

from torch.utils.hooks import RemovableHandle


def _dicts(handle: RemovableHandle) -> list[dict]:
    """The hook dict and the extra dicts (kwargs / always-called flags) of a handle."""
    refs = (handle.hooks_dict_ref, *handle.extra_dict_ref)
    return [d for d in (ref() for ref in refs) if d is not None]


class SwitchableHooks:
    """Handles of hooks registered on modules, switchable off and on as a set."""

    def __init__(self) -> None:
        self._handles: list[RemovableHandle] = []
        self._entries: list[tuple[dict, int]] = []  # (hook dict, id) of every handle
        self._off: list[tuple[dict, int, object]] | None = None  # (dict, id, value) taken out

    def add(self, handle: RemovableHandle) -> None:
        """Keep a handle (register the hook while the set is on)."""
        if self._off is not None:
            raise RuntimeError("SwitchableHooks.add() while switched off: switch on first")
        self._handles.append(handle)
        self._entries += [(hooks, handle.id) for hooks in _dicts(handle) if handle.id in hooks]

    def extend(self, handles) -> None:
        for handle in handles:
            self.add(handle)

    @property
    def on(self) -> bool:
        return self._off is None

    def switch(self, on: bool) -> None:
        """Put the hooks back in their dicts (on) or take them out (off); idempotent."""
        if on == self.on:
            return
        if on:
            for hooks, key, value in self._off:
                hooks[key] = value
            self._off = None
            return
        self._off = [(hooks, key, hooks.pop(key)) for hooks, key in self._entries if key in hooks]

    def remove(self) -> None:
        """Remove every hook for good (in either state)."""
        self._off = None
        self._entries = []
        while self._handles:
            self._handles.pop().remove()

    def __len__(self) -> int:
        return len(self._handles)

    def __repr__(self) -> str:
        return f"SwitchableHooks({len(self._handles)} hooks, {'on' if self.on else 'off'})"
