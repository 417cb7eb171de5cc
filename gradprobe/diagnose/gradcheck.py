"""`gp.gradcheck`: autograd gradients against central finite differences, layer by layer.

On a float64 deep copy of the model (the user's model is not touched), for a sample of
each layer's parameter coordinates theta_i:

    numeric_i = (L(theta + h e_i) - L(theta - h e_i)) / (2 h)

A wrong backward (a custom `torch.autograd.Function` that drops a factor) shows as a
relative error of order 1 in the layers whose gradient flows through it.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from gradprobe.diagnose.check import text_table
from gradprobe.diagnose.graph import check_loss, split_batch
from gradprobe.probe.layers import Layer, discover

# torch.autograd.gradcheck's default step for float64.
EPS = 1e-6
# Measured on the models of tests/test_diagnose_gradcheck.py (float64, h = 1e-6): correct
# gradients err by <= 2e-10 absolute (loss ~ 1) and <= 2e-7 relative, so these leave a
# margin of ~500x; a wrong backward errs by O(1) (a dropped sigmoid factor: 0.3..1.5).
# torch.autograd.gradcheck's own defaults (rtol 1e-3, atol 1e-5) are looser.
RTOL = 1e-4
ATOL = 1e-7
# Two finite-difference passes per coordinate: 12 keeps a 50-layer net under ~1,200
# forward passes and still samples every parameter tensor of a layer.
MAX_COORDS_PER_LAYER = 12


@dataclass(frozen=True)
class LayerGradcheck:
    """One layer's comparison.

    Attributes:
        layer: the layer's qualified module name (as in a Record).
        type: its class name.
        n_coords: coordinates compared (of n_params).
        n_params: trainable parameters the layer owns.
        max_abs_err: max |autograd - numeric| over the coordinates.
        max_rel_err: max |autograd - numeric| / max(|autograd|, |numeric|, floor / rtol),
            floor = atol * max(1, |loss|): below that scale an error counts as absolute.
        worst: the coordinate with that relative error, e.g. "weight[3, 1]".
        passed: max_rel_err <= rtol.
    """

    layer: str
    type: str
    n_coords: int
    n_params: int
    max_abs_err: float
    max_rel_err: float
    worst: str
    passed: bool

    def __repr__(self) -> str:
        verdict = "pass" if self.passed else "FAIL"
        return f"LayerGradcheck({self.layer!r}, {verdict}, max_rel_err={self.max_rel_err:.2e})"


class GradcheckReport:
    """Per-layer comparison of autograd and finite-difference gradients.

    Attributes:
        rows: one LayerGradcheck per layer with trainable parameters, in forward order.
        loss: the loss at the unperturbed weights (float64).
        eps, rtol, atol: the settings used.
    """

    def __init__(self, rows: list[LayerGradcheck], loss: float, eps: float, rtol: float, atol):
        self.rows, self.loss, self.eps, self.rtol, self.atol = rows, loss, eps, rtol, atol

    @property
    def passed(self) -> bool:
        """True when every layer passed."""
        return all(row.passed for row in self.rows)

    @property
    def failed(self) -> list[str]:
        """Names of the layers whose autograd gradient disagrees with finite differences."""
        return [row.layer for row in self.rows if not row.passed]

    @property
    def culprit(self) -> str | None:
        """The failing layer nearest the output: the first wrong gradient backward meets.

        A wrong backward corrupts its own layer's gradient, or (an op's wrong input
        gradient) every layer below it: either way it sits in this layer or between it
        and the next layer towards the output.
        """
        return self.failed[-1] if self.failed else None

    def __getitem__(self, layer: str) -> LayerGradcheck:
        for row in self.rows:
            if row.layer == layer:
                return row
        raise KeyError(
            f"no layer {layer!r} in this gradcheck; layers: {[r.layer for r in self.rows]}"
        )

    def __str__(self) -> str:
        head = ["layer", "type", "coords", "max_abs_err", "max_rel_err", "worst", "result"]
        rows = [
            [r.layer, r.type, f"{r.n_coords}/{r.n_params}", r.max_abs_err, r.max_rel_err,
             r.worst, "pass" if r.passed else "FAIL"]
            for r in self.rows
        ]  # fmt: skip
        verdict = "passed" if self.passed else f"FAILED at {', '.join(self.failed)}"
        title = f"gradprobe gradcheck (float64, eps={self.eps:g}, rtol={self.rtol:g}): {verdict}"
        text = title + "\n" + text_table(head, rows)
        if self.culprit is not None:
            names = [r.layer for r in self.rows]
            above = names[names.index(self.culprit) + 1 :]
            after = f" and {above[0]}" if above else " and the loss"
            text += (
                f"\nfirst wrong gradient in backward order: {self.culprit}; the faulty "
                f"backward is in {self.culprit} or between it{after}"
            )
        return text

    def __repr__(self) -> str:
        verdict = "passed" if self.passed else f"failed={self.failed}"
        return f"GradcheckReport({len(self.rows)} layers, {verdict})"


def _to_float64(obj: Any) -> Any:
    """`obj` with every floating tensor inside tuples, lists and dicts cast to float64."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to(torch.float64) if obj.is_floating_point() else obj
    if isinstance(obj, (tuple, list)):
        return type(obj)(_to_float64(item) for item in obj)
    if isinstance(obj, dict):
        return {k: _to_float64(v) for k, v in obj.items()}
    return obj


class _Loss:
    """The loss of the float64 copy as a function of its parameters, made deterministic.

    Dropout stays as the model's mode has it, but every evaluation reseeds torch's RNG
    with the same seed, so each one draws the same mask (and BatchNorm in train mode
    uses the batch's statistics, a deterministic function of the weights).
    """

    def __init__(self, model: nn.Module, batch: Any, loss_fn: Callable, seed: int) -> None:
        self.model, self.loss_fn, self.seed = model, loss_fn, seed
        self.args, self.kwargs, self.target = split_batch(_to_float64(batch))

    def __call__(self) -> torch.Tensor:
        # autograd stays on, so every evaluation runs the very code autograd differentiates
        # (some modules take another path under no_grad, e.g. the Transformer fast path)
        torch.manual_seed(self.seed)
        loss = self.loss_fn(self.model(*self.args, **self.kwargs), self.target)
        check_loss(loss)
        return loss.reshape(())

    def __repr__(self) -> str:
        return f"_Loss({type(self.model).__name__}, seed={self.seed})"


def _coords(layer: Layer, budget: int, rng: np.random.Generator) -> list[tuple[str, Any, int]]:
    """(parameter name, parameter, flat index) sampled without replacement per parameter."""
    named = [(n, p) for n, p in layer.module.named_parameters(recurse=False) if p.requires_grad]
    per_param = max(1, math.ceil(budget / max(1, len(named))))
    out = []
    for name, p in named:
        k = min(p.numel(), per_param)
        out += [(name, p, int(i)) for i in np.sort(rng.choice(p.numel(), size=k, replace=False))]
    return out


def _numeric(loss: _Loss, p: torch.Tensor, i: int, eps: float) -> float:
    """The central difference quotient of the loss in coordinate i of parameter p."""
    index = np.unravel_index(i, tuple(p.shape))
    with torch.no_grad():
        original = p[index].clone()
    taken = []
    for step in (eps, -eps):
        with torch.no_grad():
            p[index] = original + step
            at = float(p[index])
        taken.append((float(loss().detach()), at))
    with torch.no_grad():
        p[index] = original
    (up, at_up), (down, at_down) = taken
    return (up - down) / (at_up - at_down)  # the steps actually taken, after rounding


def _where(name: str, p: torch.Tensor, i: int) -> str:
    return f"{name}[{', '.join(str(int(j)) for j in np.unravel_index(i, tuple(p.shape)))}]"


def _check_layer(layer, coords, grads, loss, settings) -> LayerGradcheck:
    eps, rtol, floor = settings
    worst_rel, worst_abs, worst = 0.0, 0.0, "-"
    for name, p, i in coords:
        g = grads.get(id(p))
        analytic = 0.0 if g is None else float(g.reshape(-1)[i])
        numeric = _numeric(loss, p, i, eps)
        err = abs(analytic - numeric)
        rel = err / max(abs(analytic), abs(numeric), floor / rtol)
        worst_abs = max(worst_abs, err)
        if rel > worst_rel or math.isnan(rel):
            worst_rel, worst = rel, _where(name, p, i)
    n_params = sum(p.numel() for p in layer.module.parameters(recurse=False) if p.requires_grad)
    errors = (worst_abs, worst_rel, worst, worst_rel <= rtol)
    return LayerGradcheck(layer.name, layer.type, len(coords), n_params, *errors)


def gradcheck(
    model: nn.Module,
    batch: Any,
    loss_fn: Callable,
    *,
    eps: float = EPS,
    max_coords_per_layer: int = MAX_COORDS_PER_LAYER,
    seed: int = 0,
    rtol: float = RTOL,
    atol: float = ATOL,
) -> GradcheckReport:
    """Autograd gradients versus central finite differences in float64, per layer.

    Args:
        model: any module; a float64 deep copy is checked, in the model's train/eval mode.
        batch: (inputs, target) or a dict, as for `gradprobe.check`; floating tensors are
            cast to float64, integer ones (class labels, token ids) kept.
        loss_fn: loss_fn(output, target) -> scalar tensor; an nn.Module loss is copied
            and cast too (e.g. class weights).
        eps: the finite-difference step h. 1e-6 is torch.autograd.gradcheck's default:
            in float64 central differences then err by ~h^2 |L'''| + 1e-16 |L| / h.
        max_coords_per_layer: coordinates compared per layer, split between its
            parameters (at least one each); smaller parameters are checked whole.
        seed: picks the coordinates, and seeds torch's RNG before every evaluation so
            dropout draws one fixed mask (torch's global RNG is restored afterwards).
        rtol: a coordinate fails when |a - n| > rtol * max(|a|, |n|), a the autograd and
            n the numeric derivative...
        atol: ... and |a - n| > atol * max(1, |L|), the finite-difference rounding floor
            (it scales with the loss: 1e-16 |L| / h = 1e-10 |L| at h = 1e-6).

    Returns:
        a GradcheckReport: `.passed`, `.failed` (layer names), `.rows`, printable.
    """
    _check_args(model, eps, max_coords_per_layer, rtol, atol)
    model64 = copy.deepcopy(model).to(torch.float64)
    if isinstance(loss_fn, nn.Module):
        loss_fn = copy.deepcopy(loss_fn).to(torch.float64)
    loss = _Loss(model64, batch, loss_fn, seed)
    # every initialised CUDA device: manual_seed reseeds them all
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices), torch.enable_grad():
        value, layers = _in_forward_order(model64, loss)
        params = [p for p in model64.parameters() if p.requires_grad]
        grads = torch.autograd.grad(value, params, allow_unused=True)
        by_id = {id(p): g for p, g in zip(params, grads) if g is not None}
        settings = (eps, rtol, atol * max(1.0, abs(float(value.detach()))))
        rng = np.random.default_rng(seed)
        rows = []
        for layer in layers:
            coords = _coords(layer, max_coords_per_layer, rng)
            if coords:
                rows.append(_check_layer(layer, coords, by_id, loss, settings))
    return GradcheckReport(rows, float(value.detach()), eps, rtol, atol)


def _in_forward_order(model: nn.Module, loss: _Loss) -> tuple[torch.Tensor, list[Layer]]:
    """The loss, and the model's layers in the order the forward pass first ran them."""
    layers = discover(model, "hook")
    ran: list[Layer] = []
    handles = [
        layer.module.register_forward_hook(lambda *_, layer=layer: ran.append(layer))
        for layer in layers
    ]
    try:
        value = loss()
    finally:
        for handle in handles:
            handle.remove()
    order = list({id(layer): layer for layer in ran}.values())
    seen = {id(layer) for layer in order}
    return value, order + [layer for layer in layers if id(layer) not in seen]


def _check_args(model: Any, eps: Any, max_coords: Any, rtol: Any, atol: Any) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"gradcheck() needs a torch.nn.Module as model; got {type(model).__name__}")
    if isinstance(max_coords, bool) or not isinstance(max_coords, int) or max_coords < 1:
        raise ValueError(f"max_coords_per_layer={max_coords!r} must be an int >= 1")
    for name, value in (("eps", eps), ("rtol", rtol), ("atol", atol)):
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name}={value!r} must be a positive finite number")
