"""Detail-step statistics of an ensemble, batched: one row per member of (M, ...) tensors.

On the probe's detail steps (gradprobe.lab.ensemble_stats.EnsembleProbe) these fill the
slots that gradprobe.probe's StepStats._write_detail, ForwardCapture and StepStats.dead
fill for one model: |g| sum and max, saturation, dead units, ||W|| and the update
W_t - W_{t-1}; each slot an (M, L) table, computed with gradprobe.stats.
"""

from __future__ import annotations

import torch

from gradprobe.stats import Workspace, activation_stats
from gradprobe.stats.activation import COLUMNS, DYING
from gradprobe.stats.tensor_stats import row_abs, row_finite, row_sumsq


def _rows(t: torch.Tensor) -> torch.Tensor:
    """(M, ...) -> (M, n): one row per member."""
    return t.detach().reshape(t.shape[0], -1)


def _by_layer(values: list[torch.Tensor]) -> torch.Tensor:
    """Per-layer (M,) values -> float64 (M, L)."""
    return torch.stack(values, 1).double()


def grad_detail(weights: list, biases: list, ws: Workspace) -> dict[str, torch.Tensor]:
    """Detail steps: every gradient slot StepStats._write_detail fills, (M, L) per slot."""
    cols: dict[str, list[torch.Tensor]] = {}
    for w, b in zip(weights, biases):
        rw, rb = _rows(w.grad), _rows(b.grad)
        a = row_abs(rw, ws)
        values = {"g_w_sumsq": row_sumsq(rw), "g_b_sumsq": row_sumsq(rb),
                  "g_w_abs_sum": a.sum(1), "g_w_abs_max": a.amax(1)}  # fmt: skip
        finite = row_finite(rw, ws) + row_finite(rb, ws)  # after a is read: ws is reused
        values["g_nonfinite"] = finite.neg_().add_(rw.shape[1] + rb.shape[1])
        for name, v in values.items():
            cols.setdefault(name, []).append(v)
    out = {name: _by_layer(v) for name, v in cols.items()}
    out["g_counted"] = torch.full_like(out["g_w_sumsq"], 2.0)  # a weight and a bias each
    out["delta_sumsq"] = out["g_b_sumsq"]
    return out


def act_detail(acts: list[torch.Tensor], kinds: list, ws: Workspace) -> dict[str, torch.Tensor]:
    """Detail steps: every activation slot ForwardCapture and StepStats.dead fill."""
    stats, dead = [], {}
    for layer, (x, kind) in enumerate(zip(acts, kinds)):
        s, feature_max = activation_stats(x, x.dim() - 1, kind, ws)  # (M, 8), (M, F)
        stats.append(s)
        if kind in DYING:  # units <= 0 for the whole batch
            dead[layer] = ((feature_max <= 0).sum(1).double(), float(feature_max.shape[1]))
    table = torch.stack(stats, 1)  # (M, L, 8)
    out = {name: table[..., j] for j, name in enumerate(COLUMNS)}
    if dead:
        out["a_dead"], out["a_units"] = torch.zeros_like(table[..., :2]).unbind(2)
        for layer, (count, units) in dead.items():
            out["a_dead"][:, layer], out["a_units"][:, layer] = count, units
    return out


def weight_detail(weights: list, prev: list | None, numel: torch.Tensor) -> dict:
    """Detail steps: ||W||^2 and, given W_{t-1} (overwritten), the update's slots."""
    out = {"w_sumsq": _by_layer([row_sumsq(_rows(w)) for w in weights]), "w_numel": numel}
    if prev is not None:
        torch._foreach_sub_(prev, [w.detach() for w in weights])  # W_{t-1} - W_t
        rows = [_rows(d) for d in prev]
        out["u_sumsq"] = _by_layer([row_sumsq(r) for r in rows])
        out["u_abs_sum"] = _by_layer([r.abs_().sum(1) for r in rows])  # prev is scratch now
        out["u_numel"] = numel
    return out
