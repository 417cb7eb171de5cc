"""The gradient through a chain, measured with autograd in float64.

Two chains. The two-unit chain: `DEPTH` Linear layers of `WIDTH` units, weights g I, zero
biases, ReLU or sigmoid hidden layers and a sigmoid output, fed the 2-D blobs; per layer we
report the sizes of dz = dC/dz (the pre-activation gradient), dw = dC/dW and db = dC/db.
Nielsen's chain (NNDL ch. 5): single sigmoid neurons z_j = w_j a_{j-1} + b_j, where
dC/db_1 = sigma'(z_1) w_2 sigma'(z_2) ... w_n sigma'(z_n) dC/da_n.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gradprobe.lab.init import init_model_
from gradprobe.lab.models import mlp

DEPTH = 10  # the chain demo: ten layers ...
WIDTH = 2  # ... of two units, so that W = g I is square for the 2-D points
N_NEURONS = 4  # Nielsen's chain: four sigmoid neurons (ch. 5, the figure before eq. 121)


@dataclass(frozen=True)
class Variant:
    """One chain of the demo: the hidden activation and the weight scale g (W = g I)."""

    activation: str
    g: float

    @property
    def name(self) -> str:
        return f"{self.activation}-{self.g:g}"

    def __repr__(self) -> str:
        return f"Variant({self.name}: {self.activation} hidden layers, W = {self.g:g} I)"


# the demo's chains: ReLU and all-sigmoid, each with W = 0.8 I (vanishing) and 1.1 I (exploding)
VARIANTS = tuple(Variant(act, g) for act in ("relu", "sigmoid") for g in (0.8, 1.1))


def _positive(name: str, value) -> float:
    real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not (real and math.isfinite(value) and value > 0):
        raise ValueError(f"{name}={value!r} must be a finite number > 0")
    return float(value)


def _count(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name}={value!r} must be an int >= 1")
    return int(value)


def chain_model(variant: Variant, *, depth: int = DEPTH, width: int = WIDTH) -> nn.Sequential:
    """The chain fc1, act1, ..., fc{depth} in float64, weights g I and zero biases.

    The output layer has no activation module: its sigmoid is inside `chain_cost`.

    Raises:
        ValueError: g not a finite number > 0, depth or width < 1, an unknown activation.
    """
    g = _positive("g", variant.g)
    depth, width = _count("depth", depth), _count("width", width)
    model = mlp([width] * (depth + 1), variant.activation, "scaled_identity", init_params={"g": g})
    # Re-initialise after the cast, so that W = g I holds g in float64, not float32's 0.8000000119.
    return init_model_(model.double(), "scaled_identity", g=g)


def one_hot(labels: torch.Tensor, width: int = WIDTH) -> torch.Tensor:
    """Class indices (n,) -> float64 targets of shape (n, width), one sigmoid unit per class."""
    return F.one_hot(labels.long(), width).double()


def chain_cost(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sigmoid outputs with the cross-entropy cost, summed over output units, mean over points;
    the output delta is the textbook dC/dz = (sigma(z) - y) / n."""
    per_unit = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return per_unit.sum(dim=1).mean()


@dataclass(frozen=True)
class ChainGradients:
    """Per-layer gradient sizes of one chain on one batch.

    Attributes:
        variant: the chain.
        dz, dw, db: Frobenius norms of dC/dz (over the (n, width) batch matrix), dC/dW and
            dC/db, C being the batch-mean cost; arrays of shape (n_layers,), input first.
        live_dz: the norm of dC/dz over the (point, unit) entries that every hidden
            activation passes (nonzero slope), shape (n_layers,); equals dz for sigmoid.
        blocked: fraction of the (point, unit) entries some hidden activation blocks.
    """

    variant: Variant
    dz: np.ndarray
    dw: np.ndarray
    db: np.ndarray
    live_dz: np.ndarray
    blocked: float

    @property
    def ratios(self) -> np.ndarray:
        """dz of each layer over dz of the layer above, array of shape (n_layers - 1,)."""
        return self.dz[:-1] / self.dz[1:]

    @property
    def live_ratios(self) -> np.ndarray:
        """As `ratios`, on the entries the hidden activations pass, shape (n_layers - 1,)."""
        return self.live_dz[:-1] / self.live_dz[1:]

    def rows(self) -> tuple[dict[str, object], ...]:
        """The demo's printout: one dict per layer (layer, dz, dw, db, dz / dz above)."""
        above = [*self.ratios.tolist(), None]
        return tuple(
            {"layer": f"fc{i + 1}", "dz": dz, "dw": dw, "db": db, "dz / dz above": r}
            for i, (dz, dw, db, r) in enumerate(
                zip(self.dz.tolist(), self.dw.tolist(), self.db.tolist(), above)
            )
        )

    def __repr__(self) -> str:
        return (
            f"ChainGradients({self.variant.name}: dz {self.dz[0]:.3g} (fc1) .. "
            f"{self.dz[-1]:.3g} (fc{len(self.dz)}), blocked {self.blocked:.3f})"
        )


def _check_batch(x: torch.Tensor, labels: torch.Tensor, width: int) -> None:
    if x.ndim != 2 or x.shape[1] != width or x.shape[0] < 1:
        raise ValueError(f"x of shape {tuple(x.shape)} given; need points of shape (n, {width})")
    if labels.shape != (x.shape[0],):
        raise ValueError(f"labels of shape {tuple(labels.shape)} given; need ({x.shape[0]},)")
    if not torch.isfinite(x).all():
        raise ValueError("x holds NaN or inf; the chain needs finite points")


def _slope_nonzero(activation: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """Boolean (n, width): where the activation's slope at z is not zero (autograd)."""
    z = z.detach().requires_grad_(True)
    (slope,) = torch.autograd.grad(activation(z).sum(), z)
    return slope != 0


def chain_gradients(variant: Variant, x: torch.Tensor, labels: torch.Tensor) -> ChainGradients:
    """One forward and backward pass of the chain on the whole batch (float64 autograd).

    Args:
        variant: the chain (hidden activation, g).
        x: points, shape (n, WIDTH) (any float dtype; cast to float64 exactly).
        labels: class indices 0 / 1, shape (n,).

    Raises:
        ValueError: a bad shape or non-finite points; those of `chain_model`.
    """
    _check_batch(x, labels, WIDTH)
    model = chain_model(variant)
    h, zs, passed = x.double(), [], torch.ones(x.shape, dtype=torch.bool)
    for name, module in model.named_children():
        if name.startswith("act"):
            passed &= _slope_nonzero(module, h)
        h = module(h)
        if name.startswith("fc"):
            h.retain_grad()
            zs.append(h)
    chain_cost(h, one_hot(labels)).backward()
    linears = [m for m in model if isinstance(m, nn.Linear)]
    return ChainGradients(
        variant=variant,
        dz=np.array([z.grad.norm().item() for z in zs]),
        dw=np.array([m.weight.grad.norm().item() for m in linears]),
        db=np.array([m.bias.grad.norm().item() for m in linears]),
        live_dz=np.array([(z.grad * passed).norm().item() for z in zs]),
        blocked=1.0 - passed.double().mean().item(),
    )


@dataclass(frozen=True)
class NeuronChain:
    """Nielsen's chain of single sigmoid neurons, its gradients by autograd and by his product.

    Attributes:
        w, b: weights and biases, shape (n,); neuron j computes z_j = w_j a_{j-1} + b_j.
        x, y: the input a_0 and the target; the cost is C = (a_n - y)^2 / 2.
        z, slope: pre-activations z_j and sigma'(z_j) (autograd), shape (n,).
        grad_b: dC/db_j from autograd, shape (n,).
        product: sigma'(z_1) w_2 sigma'(z_2) ... w_n sigma'(z_n) dC/da_n, Nielsen's eq.
    """

    w: np.ndarray
    b: np.ndarray
    x: float
    y: float
    z: np.ndarray
    slope: np.ndarray
    grad_b: np.ndarray
    product: float

    @property
    def factors(self) -> np.ndarray:
        """dC/db_j / dC/db_{j+1} = sigma'(z_j) w_{j+1}, shape (n - 1,): the gain per neuron."""
        return self.grad_b[:-1] / self.grad_b[1:]

    @property
    def relative_error(self) -> float:
        """|product - dC/db_1| / |dC/db_1|: the chain rule against autograd."""
        return abs(self.product - self.grad_b[0]) / abs(self.grad_b[0])

    def rows(self) -> tuple[dict[str, object], ...]:
        """One dict per neuron: w, b, z, sigma'(z), dC/db, dC/db over the next neuron's."""
        ratio = [*self.factors.tolist(), None]
        cols = (self.w, self.b, self.z, self.slope, self.grad_b)
        return tuple(
            {"neuron": j + 1, "w": w, "b": b, "z": z, "sigma'(z)": s, "dC/db": d, "ratio": r}
            for j, (w, b, z, s, d, r) in enumerate(zip(*(c.tolist() for c in cols), ratio))
        )

    def __repr__(self) -> str:
        return (
            f"NeuronChain(n={len(self.w)}, dC/db1 = {self.grad_b[0]:.4g}, "
            f"product {self.product:.4g}, factors {np.round(self.factors, 4).tolist()})"
        )


def neuron_chain(w, b, x: float, y: float) -> NeuronChain:
    """Run Nielsen's chain forward and backward in float64.

    Args:
        w, b: weights and biases, array-likes of shape (n,), n >= 2.
        x: the input a_0; y: the target of the quadratic cost.

    Raises:
        ValueError: w and b of different or too short lengths, non-finite numbers.
    """
    w, b = (torch.as_tensor(v, dtype=torch.float64).reshape(-1) for v in (w, b))
    if len(w) != len(b) or len(w) < 2:
        raise ValueError(f"w has {len(w)} and b {len(b)} entries; need the same number, >= 2")
    if not (torch.isfinite(w).all() and torch.isfinite(b).all() and math.isfinite(x + y)):
        raise ValueError(f"w={w.tolist()}, b={b.tolist()}, x={x}, y={y} must all be finite")
    b = b.clone().requires_grad_(True)
    a, zs = torch.tensor(float(x), dtype=torch.float64), []
    for j in range(len(w)):
        z = w[j] * a + b[j]
        z.retain_grad()
        zs.append(z)
        a = torch.sigmoid(z)
    dc_da = (a - y).item()  # C = (a_n - y)^2 / 2
    (0.5 * (a - y) ** 2).backward()
    slope = np.array([sigmoid_slope(z.item()) for z in zs])
    wn = w.numpy()
    product = slope[0] * np.prod(wn[1:] * slope[1:]) * dc_da
    return NeuronChain(
        w=wn.copy(),
        b=b.detach().numpy().copy(),
        x=float(x),
        y=float(y),
        z=np.array([z.item() for z in zs]),
        slope=slope,
        grad_b=b.grad.numpy().copy(),
        product=float(product),
    )


def sigmoid_slope(z: float) -> float:
    """sigma'(z) by autograd in float64."""
    t = torch.tensor(float(z), dtype=torch.float64, requires_grad=True)
    torch.sigmoid(t).backward()
    return t.grad.item()


def sigmoid_slope_max(half_width: float = 10.0, n_half: int = 10000) -> tuple[float, float]:
    """The largest sigma'(z) on the grid z = k half_width / n_half, k = -n_half..n_half (it
    holds z = 0 exactly), and where it is: (max slope, z at the max), autograd in float64."""
    step = _positive("half_width", half_width) / _count("n_half", n_half)
    z = (torch.arange(-n_half, n_half + 1, dtype=torch.float64) * step).requires_grad_(True)
    (slope,) = torch.autograd.grad(torch.sigmoid(z).sum(), z)
    i = int(slope.argmax())
    return slope[i].item(), z[i].item()


def random_neuron_chain(seed: int, n: int = N_NEURONS) -> NeuronChain:
    """Nielsen's chain with his standard initialisation: w, b ~ N(0, 1); x ~ N(0, 1),
    y ~ U(0, 1), all drawn from numpy's default_rng(seed)."""
    rng = np.random.default_rng(seed)
    w, b = rng.standard_normal(n), rng.standard_normal(n)
    return neuron_chain(w, b, float(rng.standard_normal()), float(rng.uniform()))


def exploding_chain(w: float = 100.0, n: int = N_NEURONS, x: float = 1.0) -> NeuronChain:
    """Nielsen's exploding example: every w_j = w and biases making every z_j = 0
    (b_1 = -w x, b_j = -w sigma(0) = -w / 2), so each factor w sigma'(0) = w / 4. Target 0."""
    w = _positive("w", w)
    biases = [-w * x] + [-w * 0.5] * (n - 1)
    return neuron_chain([w] * n, biases, x, 0.0)
