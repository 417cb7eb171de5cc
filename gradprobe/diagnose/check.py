"""`gp.check`: one forward and backward at the current weights, diagnosed; nothing changed.

report = gp.check(model, (x, y), loss_fn)    # before training, or at any point in it
print(report)                                # per-layer table, then the findings
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from gradprobe.diagnose.diagnosis import diagnose
from gradprobe.diagnose.finding import SEVERITIES, Finding
from gradprobe.diagnose.graph import forward, untouched
from gradprobe.diagnose.lints import lint_pass
from gradprobe.diagnose.thresholds import Thresholds
from gradprobe.probe.probe import Probe
from gradprobe.record.record import Record
from gradprobe.record.sink import MemorySink

TABLE_COLUMNS = (
    "delta_norm",
    "grad_norm",
    "weight_norm",
    "act_mean",
    "act_std",
    "saturated_frac",
    "dead_frac",
)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.3g}"
    return str(value)


def text_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Plain-text table: the first column left-aligned, the others right-aligned."""
    cells = [list(headers)] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[j]) for row in cells) for j in range(len(headers))]

    def line(row: list[str]) -> str:
        first = row[0].ljust(widths[0])
        return "  ".join([first] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]).rstrip()

    return "\n".join(line(row) for row in cells)


class CheckReport:
    """What one forward/backward pass at the current weights showed.

    Attributes:
        findings: the diagnosis of the one-step record, then the lints, most severe first.
        record: the one-step Record (every quantity measured: detail_every=1).
        loss: the loss of the batch.
    """

    def __init__(self, record: Record, findings: list[Finding], loss: float) -> None:
        self.record = record
        rank = {s: i for i, s in enumerate(SEVERITIES)}
        self.findings = sorted(findings, key=lambda f: -rank[f.severity])
        self.loss = loss

    @property
    def healthy(self) -> bool:
        """True when no finding is a warning or an error."""
        return all(f.severity == "info" for f in self.findings)

    def table(self) -> list[dict[str, Any]]:
        """One row per layer in forward order: {"layer", "type", *TABLE_COLUMNS}."""
        rows = []
        for i, info in enumerate(self.record.layer_info):
            row: dict[str, Any] = {"layer": info["name"], "type": info.get("type")}
            for q in TABLE_COLUMNS:
                row[q] = float(self.record[q][0, i]) if q in self.record else math.nan
            rows.append(row)
        return rows

    def __str__(self) -> str:
        rows = [[r["layer"], r["type"], *(r[q] for q in TABLE_COLUMNS)] for r in self.table()]
        parts = [
            f"gradprobe check: loss {self.loss:.4g}, {len(rows)} layers",
            text_table(["layer", "type", *TABLE_COLUMNS], rows),
        ]
        if not self.findings:
            parts.append("no findings")
        parts += [f"[{f.severity}] {f}" for f in self.findings]
        return "\n".join(parts)

    def __repr__(self) -> str:
        kinds = ", ".join(f.kind for f in self.findings) or "none"
        return (
            f"CheckReport(loss={self.loss:.4g}, {len(self.record.layers)} layers, "
            f"{len(self.findings)} findings: {kinds})"
        )


def _check_args(model: Any, loss_fn: Any, optimizer: Any) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"check() needs a torch.nn.Module as model; got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable(output, target); got {type(loss_fn).__name__}")
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"optimizer must be a torch.optim.Optimizer or None; got {type(optimizer).__name__}"
        )


def check(
    model: nn.Module,
    batch: Any,
    loss_fn: Callable,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    lints: bool = True,
    unknown: str = "hook",
    thresholds: Thresholds | None = None,
    **overrides: Any,
) -> CheckReport:
    """One forward and backward on `batch` at the current weights, with the probe's statistics.

    The model runs in its current train/eval mode. Afterwards everything is as it was,
    bit for bit (see `gradprobe.diagnose.graph.untouched`): weights, buffers such as
    BatchNorm's running statistics, every `.grad`, requires_grad flags, train/eval modes,
    the optimizer's state and torch's RNG. The gradients measured are this batch's alone
    (existing `.grad` are set aside, not added to).

    Args:
        model: any module. Do not call check on a model a live probe is watching: that
            probe's hooks would see this pass too.
        batch: (inputs, target), or a dict with a target key ("y", "target", "labels",
            ...); see `gradprobe.diagnose.graph.split_batch`.
        loss_fn: loss_fn(output, target) -> scalar tensor.
        optimizer: if given, one step of it is taken (then undone) so that update_norm
            and update_ratio are measured and the update rules can fire.
        lints: also run the static lints on the graph of this pass.
        unknown: parameter-owning module types the probe does not know: "hook", "skip"
            or "error" (as for `gradprobe.watch`).
        thresholds: a full Thresholds for `diagnose`; the defaults when None.
        **overrides: single thresholds by name, passed to `diagnose`.

    Returns:
        a CheckReport: `.findings`, `.record`, `.table()`, printable.
    """
    _check_args(model, loss_fn, optimizer)
    with untouched(model, optimizer), torch.enable_grad():
        for p in _parameters(model, optimizer):
            p.grad = None  # `untouched` puts the user's own .grad tensors back
        # what gradprobe.watch(model, optimizer, run_dir=None) builds (diagnose may not
        # import attach): a probe recording to memory
        probe = Probe(
            model,
            optimizer,
            MemorySink,
            every=1,
            detail_every=1,
            weight_change=optimizer is not None,
            # one pass: measure dC/dz at every output (a frozen bias has no .grad to read)
            delta="hook",
            unknown=unknown,
        )
        try:
            fp = forward(model, batch, loss_fn)
            found = lint_pass(fp) if lints else []
            probe.log_loss(fp.loss)
            fp.loss.backward()
            if optimizer is None:
                probe.step()
            else:
                optimizer.step()
        finally:
            probe.close()
        record = probe.record()
        loss = float(fp.loss.detach())
    return CheckReport(record, diagnose(record, thresholds, **overrides) + found, loss)


def _parameters(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> list[torch.Tensor]:
    params = {id(p): p for p in model.parameters()}
    for group in optimizer.param_groups if optimizer is not None else []:
        params.update({id(p): p for p in group["params"]})
    return list(params.values())
