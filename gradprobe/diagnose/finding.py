"""`Finding`: one verdict of the diagnosis, with the layers, steps, evidence, cause and fix.

The kinds are the fixed vocabulary of DESIGN.md ("Findings"): add new ones, never rename.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

KINDS = (
    "vanishing_gradient",
    "exploding_gradient",
    "nonfinite",
    "saturation",
    "dead_units",
    "update_too_large",
    "update_too_small",
    "loss_divergence",
    "loss_plateau",
    "lint_mse_for_classification",
    "lint_double_softmax",
    "lint_unstable_log_softmax",
)
# Ordered from the least to the most serious: "error" means learning has stopped.
SEVERITIES = ("info", "warning", "error")
AXES = ("depth", "time")


def json_safe(value: Any) -> Any:
    """`value` with numpy scalars and arrays, tuples and non-finite floats made JSON-safe.

    NaN and infinities become the strings "nan", "inf" and "-inf": strict JSON has no
    literal for them.
    """
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return [json_safe(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else str(value)
    return value


def _one_of(name: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not one of: {', '.join(allowed)}")


def span_text(steps: Sequence[int]) -> str:
    """ "step 3", "steps 0-9" (first-last) or "" when there are none."""
    if not steps:
        return ""
    if len(steps) == 1:
        return f"step {steps[0]}"
    return f"steps {steps[0]}-{steps[-1]}"


@dataclass(frozen=True)
class Finding:
    """One verdict about a run.

    Attributes:
        kind: one of KINDS.
        layers: the layers concerned, in forward order (empty for loss findings).
        steps: the recorded steps the evidence was taken from, increasing.
        severity: "info", "warning" or "error" (learning has stopped).
        evidence: the numbers that triggered the finding (JSON-safe).
        cause: the likely cause, in words.
        fix: a concrete remedy.
        axis: "depth" (across layers) or "time" (across the time steps of a recurrent layer).
        summary: the key numbers in a few words, e.g. "x0.21 per layer, 1e-4 at fc1".
    """

    kind: str
    layers: tuple[str, ...]
    steps: tuple[int, ...]
    severity: str
    evidence: dict = field(default_factory=dict)
    cause: str = ""
    fix: str = ""
    axis: str = "depth"
    summary: str = ""

    def __post_init__(self) -> None:
        _one_of("kind", self.kind, KINDS)
        _one_of("severity", self.severity, SEVERITIES)
        _one_of("axis", self.axis, AXES)
        object.__setattr__(self, "layers", tuple(str(name) for name in self.layers))
        object.__setattr__(self, "steps", tuple(int(s) for s in self.steps))
        object.__setattr__(self, "evidence", json_safe(dict(self.evidence)))

    @property
    def place(self) -> str:
        """Where: the layer range "fc1..fc4" a rule named, else the layers listed."""
        if self.evidence.get("layer_range"):
            return str(self.evidence["layer_range"])
        if len(self.layers) > 4:
            return f"{', '.join(self.layers[:3])} and {len(self.layers) - 3} more"
        return ", ".join(self.layers)

    def __str__(self) -> str:
        head = self.kind + (" along time" if self.axis == "time" else "")
        if self.place:
            head += f" at {self.place}"
        if self.steps:
            head += f" ({span_text(self.steps)})"
        parts = [head + (f": {self.summary}" if self.summary else "")]
        parts += [f"cause: {self.cause}"] if self.cause else []
        parts += [f"fix: {self.fix}"] if self.fix else []
        return "; ".join(parts)

    def __repr__(self) -> str:
        span = span_text(self.steps) or "no steps"
        return (
            f"Finding({self.kind!r}, layers={list(self.layers)}, {span}, "
            f"severity={self.severity!r}, axis={self.axis!r})"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (plain lists, str, int, float) that `from_dict` reads back."""
        return {
            "kind": self.kind,
            "layers": list(self.layers),
            "steps": list(self.steps),
            "severity": self.severity,
            "axis": self.axis,
            "summary": self.summary,
            "evidence": json_safe(self.evidence),
            "cause": self.cause,
            "fix": self.fix,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Finding:
        """The Finding a `to_dict` result describes; unknown keys are an error."""
        allowed = {"kind", "layers", "steps", "severity", "axis", "summary"}
        allowed |= {"evidence", "cause", "fix"}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ValueError(f"unknown Finding fields {unknown}; allowed: {sorted(allowed)}")
        missing = sorted({"kind", "severity"} - set(data))
        if missing:
            raise ValueError(f"a Finding needs the fields {missing}; got {sorted(data)}")
        return cls(
            kind=data["kind"],
            layers=tuple(data.get("layers", ())),
            steps=tuple(data.get("steps", ())),
            severity=data["severity"],
            evidence=dict(data.get("evidence", {})),
            cause=data.get("cause", ""),
            fix=data.get("fix", ""),
            axis=data.get("axis", "depth"),
            summary=data.get("summary", ""),
        )
