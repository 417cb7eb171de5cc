"""`Context`: what the remedies need to know about the model being fixed, read once from
the factory's signature, one built model, one batch and the findings."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from gradprobe.diagnose.finding import Finding
from gradprobe.lab.fixes import edits
from gradprobe.lab.fixes.plan import OPTIONS

RELU_FAMILY = ("relu", "leaky_relu", "elu", "selu", "gelu")
SQUASHING = ("sigmoid", "tanh")


def accepted_options(build_model: Callable) -> frozenset[str]:
    """The remedy options (plan.OPTIONS) that `build_model` takes as named keywords."""
    try:
        params = inspect.signature(build_model).parameters
    except (TypeError, ValueError):  # builtins and some C callables have no signature
        return frozenset()
    kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return frozenset(n for n, p in params.items() if n in OPTIONS and p.kind in kinds)


def output_head(model: nn.Module, batch: Any, loss_fn: Callable) -> tuple[str | None, bool]:
    """(the output module's name when it is a probability head, whether the targets are
    class labels or one-hot), from one forward pass that leaves the model untouched."""
    from gradprobe.diagnose.graph import forward, untouched
    from gradprobe.diagnose.lints import classification_target

    with untouched(model):
        fp = forward(model, batch, loss_fn)
    head = fp.output_module if fp.output_module_type in edits.HEADS else None
    return head, classification_target(fp.target) is not None


def _seq_len(batch: Any) -> int | None:
    x = batch[0] if isinstance(batch, (tuple, list)) and batch else None
    return int(x.shape[1]) if isinstance(x, torch.Tensor) and x.dim() == 3 else None


@dataclass(frozen=True)
class Context:
    """The model being fixed, as the remedies see it.

    Attributes:
        activation: its hidden activation (a lab name) or None.
        depth: Linear / Conv / recurrent layers.
        has_lstm: it holds an nn.LSTM.
        norms: the normalisation it already has: "batch" and / or "layer".
        seq_len: time steps T of a (B, T, F) input batch (batch first), else None.
        head: the qualified name of a Softmax / LogSoftmax / Sigmoid output module.
        classification: the targets are class labels or one-hot rows.
        accepts: the factory options it can be rebuilt with.
        findings: what the diagnosis said.
        has_tanh_rnn: it holds an nn.RNN with the tanh nonlinearity.
    """

    activation: str | None
    depth: int
    has_lstm: bool
    norms: frozenset[str]
    seq_len: int | None
    head: str | None
    classification: bool
    accepts: frozenset[str]
    findings: tuple[Finding, ...]
    has_tanh_rnn: bool = False

    @classmethod
    def read(cls, model, batch, loss_fn, build_model, findings, accepts=None) -> Context:
        head, classification = output_head(model, batch, loss_fn)
        return cls(
            activation=edits.hidden_activation(model),
            depth=edits.count_layers(model),
            has_lstm=edits.has_lstm(model),
            norms=edits.norm_kinds(model),
            seq_len=_seq_len(batch),
            head=head,
            classification=classification,
            accepts=accepted_options(build_model) if accepts is None else frozenset(accepts),
            findings=tuple(findings),
            has_tanh_rnn=edits.has_tanh_rnn(model),
        )

    @property
    def kinds(self) -> set[str]:
        return {f.kind for f in self.findings}

    def update_ratio(self) -> float | None:
        """The largest per-layer update ratio an update finding measured, or None."""
        ratios = [
            float(v)
            for f in self.findings
            if f.kind in ("update_too_large", "update_too_small")
            for v in dict(f.evidence.get("update_ratio", {})).values()
            if isinstance(v, (int, float)) and np.isfinite(v) and v > 0
        ]
        return max(ratios) if ratios else None

    def __repr__(self) -> str:
        return (
            f"Context(activation={self.activation!r}, depth={self.depth}, head={self.head!r}, "
            f"accepts={sorted(self.accepts)}, kinds={sorted(self.kinds)})"
        )
