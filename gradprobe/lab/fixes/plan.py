"""`Plan`: what one trial changes, in the three places a change can go.

- the model factory's keywords (`options`: activation, norm, residual_alpha), for lab
  runs and for factories that accept them;
- edits of the built module (`init`, `forget_bias`, `strip_head`), which work on any
  nn.Module;
- the training loop (`lr_factor`, `clip_norm`, `loss`).

A candidate remedy is one Plan; two remedies combine by `merge` when they touch
different things.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

# Factory keywords a remedy may pass, and what each means (see remedies.py).
OPTIONS = ("activation", "norm", "residual_alpha")
LOSSES = ("cross_entropy",)  # the loss a loss-change remedy trains with


@dataclass(frozen=True)
class Plan:
    """One trial's changes; the default Plan changes nothing (the baseline).

    Attributes:
        options: factory keywords, as sorted (name, value) pairs.
        init: re-initialise every Linear / Conv / RNN layer: ("he_normal", gain),
            ("critical", sigma_w^2), ("lsuv", target variance); None keeps the weights.
        forget_bias: every LSTM's forget-gate bias: ("constant", b) or ("chrono", T),
            Tallec & Ollivier's log U(1, T - 1).
        strip_head: replace a Softmax / LogSoftmax / Sigmoid output module by Identity,
            so the model returns logits.
        lr_factor: multiplies every parameter group's learning rate.
        clip_norm: clip the global gradient norm to this before each step.
        loss: train with this loss instead of the user's ("cross_entropy").
    """

    options: tuple[tuple[str, Any], ...] = ()
    init: tuple[str, float] | None = None
    forget_bias: tuple[str, float] | None = None
    strip_head: bool = False
    lr_factor: float = 1.0
    clip_norm: float | None = None
    loss: str | None = None

    def __post_init__(self) -> None:
        names = [name for name, _ in self.options]
        unknown = sorted(set(names) - set(OPTIONS))
        if unknown:
            raise ValueError(f"plan options {unknown} are not among: {', '.join(OPTIONS)}")
        object.__setattr__(self, "options", tuple(sorted(dict(self.options).items())))
        if not self.lr_factor > 0:
            raise ValueError(f"lr_factor={self.lr_factor!r} must be > 0")
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise ValueError(f"clip_norm={self.clip_norm!r} must be > 0 or None")
        if self.loss is not None and self.loss not in LOSSES:
            raise ValueError(f"loss={self.loss!r} is not one of: {', '.join(LOSSES)}")

    @property
    def kwargs(self) -> dict[str, Any]:
        """The factory keywords as a dict."""
        return dict(self.options)

    @property
    def is_baseline(self) -> bool:
        return self == Plan()

    def touched(self) -> set[str]:
        """The fields this plan sets away from the baseline (options count per keyword)."""
        out = {f"option:{name}" for name, _ in self.options}
        for f in fields(self):
            if f.name != "options" and getattr(self, f.name) != getattr(BASELINE, f.name):
                out.add(f.name)
        return out

    def merge(self, other: Plan) -> Plan | None:
        """Both plans' changes at once; None when they set the same thing."""
        if self.touched() & other.touched():
            return None
        changes = {
            f.name: getattr(other, f.name)
            for f in fields(other)
            if f.name != "options" and f.name in other.touched()
        }
        return replace(self, options=self.options + other.options, **changes)

    def describe(self) -> str:
        """The changes in a few words, e.g. "activation=relu, init he_normal"."""
        parts = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.options]
        if self.init is not None:
            parts.append(f"init {self.init[0]} ({self.init[1]:g})")
        if self.forget_bias is not None:
            rule, value = self.forget_bias
            parts.append(
                f"forget bias {value:.3g}" if rule == "constant" else f"chrono T={value:g}"
            )
        if self.strip_head:
            parts.append("logits out")
        if self.lr_factor != 1.0:
            parts.append(f"lr x{self.lr_factor:.3g}")
        if self.clip_norm is not None:
            parts.append(f"clip {self.clip_norm:g}")
        if self.loss is not None:
            parts.append(f"loss {self.loss}")
        return ", ".join(parts) or "unchanged"

    def __repr__(self) -> str:
        return f"Plan({self.describe()})"


BASELINE = Plan()
