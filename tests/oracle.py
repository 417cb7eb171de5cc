"""Oracle: the quantities a probe should record, computed by plain autograd and arithmetic.

The test runs a training step itself, keeping each layer's output (retain_grad) and its
weights before and after the optimizer step, and computes every quantity directly in
float64, independently of gradprobe's fused statistics.
"""

from __future__ import annotations

import math

import torch
from torch import nn

CHANNELS_FIRST = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm)


def layer_modules(model: nn.Module) -> dict[str, nn.Module]:
    return {
        (name or type(m).__name__): m
        for name, m in model.named_modules()
        if next(m.parameters(recurse=False), None) is not None
    }


def split_params(module: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    weights, biases = [], []
    for name, p in module.named_parameters(recurse=False):
        (biases if "bias" in name else weights).append(p)
    return weights, biases


def _norm(tensors) -> float:
    if not tensors:
        return math.nan
    return math.sqrt(sum(float(t.double().square().sum()) for t in tensors))


class OutputCatcher:
    """Forward hooks that keep each layer's output with retain_grad (for dC/dz)."""

    def __init__(self, model: nn.Module) -> None:
        self.outputs: dict[str, list[torch.Tensor]] = {}
        self.handles = []
        for name, m in layer_modules(model).items():
            self.handles.append(m.register_forward_hook(self._hook(name)))

    def _hook(self, name):
        def hook(module, args, out):
            t = out if isinstance(out, torch.Tensor) else out[0]
            if t.requires_grad:
                t.retain_grad()
                self.outputs.setdefault(name, []).append(t)

        return hook

    def clear(self) -> None:
        self.outputs = {}

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def delta_norm(module: nn.Module, outputs: list[torch.Tensor]) -> tuple[float, float]:
    """|| sum over calls and every non-unit axis of dC/dz ||, and the same sum of |dC/dz|.

    The second is the scale float32 rounding acts on: where the sum cancels to ~0 (a conv
    bias before BatchNorm), a float32 reduction is exact only to ~1e-7 of that scale.
    """
    fd = 1 if isinstance(module, CHANNELS_FIRST) else -1
    total = scale = None
    for t in outputs:
        if t.grad is None:
            continue
        g = t.grad.double()
        dims = tuple(i for i in range(g.dim()) if i != fd % g.dim())
        vec, mag = g.sum(dim=dims), g.abs().sum(dim=dims)
        total = vec if total is None else total + vec
        scale = mag if scale is None else scale + mag
    if total is None:
        return math.nan, 0.0
    return float(total.norm()), float(scale.norm())


def train_step_with_oracle(model, opt, catcher, batch, loss_fn) -> tuple[dict, float]:
    """One step; returns ({quantity: {layer: value}}, loss) computed by the oracle."""
    layers = layer_modules(model)
    catcher.clear()
    opt.zero_grad()
    x, y = batch
    loss = loss_fn(model(x), y)
    loss.backward()
    before = {n: [w.detach().clone() for w in split_params(m)[0]] for n, m in layers.items()}
    grads = {n: [p.grad for p in m.parameters(recurse=False)] for n, m in layers.items()}
    expected: dict[str, dict[str, float]] = {}

    def put(q, n, v):
        expected.setdefault(q, {})[n] = v

    for n, m in layers.items():
        w, b = split_params(m)
        wg = [p.grad for p in w if p.grad is not None]
        put("grad_norm", n, _norm(wg))
        put("bias_grad_norm", n, _norm([p.grad for p in b if p.grad is not None]))
        flat = torch.cat([g.double().reshape(-1) for g in wg]) if wg else None
        put("grad_abs_mean", n, math.nan if flat is None else float(flat.abs().mean()))
        put("grad_abs_max", n, math.nan if flat is None else float(flat.abs().max()))
        delta, scale = delta_norm(m, catcher.outputs.get(n, []))
        put("delta_norm", n, delta)
        put("_delta_scale", n, scale)
    total = [g for gs in grads.values() for g in gs if g is not None]
    global_norm = _norm(total)
    opt.step()
    for n, m in layers.items():
        w, _ = split_params(m)
        diffs = [a.detach().double() - b.double() for a, b in zip(w, before[n])]
        put("weight_norm", n, _norm([p.detach() for p in w]))
        put("update_norm", n, _norm(diffs))
        numel = sum(d.numel() for d in diffs)
        put("weight_change_mean", n, sum(float(d.abs().sum()) for d in diffs) / numel)
        put("update_ratio", n, expected["update_norm"][n] / expected["weight_norm"][n])
    expected["_global_grad_norm"] = {"": global_norm}
    return expected, float(loss.detach())
