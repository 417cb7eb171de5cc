"""The `nan` experiment's pieces: the networks, the data and a float64 training loop.

Stack Overflow question 44686609 trains 1,000-unit sigmoid layers on MNIST in Haskell
(hmatrix, float64) and sees activations of order 1e-100, then NaN, or no learning at all.
The lab's Experiment trains in float32, where 1e-100 is not representable (the smallest
float32 is 1.4e-45), so this loop trains in float64 with `gradprobe.watch` attached.
Every size is a parameter, so tests run a small version in seconds.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from gradprobe.attach import watch
from gradprobe.diagnose.diagnosis import diagnose
from gradprobe.diagnose.finding import Finding
from gradprobe.lab.build import seed_streams
from gradprobe.lab.datasets.mnist import load_mnist
from gradprobe.lab.losses import make_loss
from gradprobe.lab.models import mlp
from gradprobe.record import Record

WIDTH = 1000  # the question: "layer size (say, 1000)"
DEPTH = 2  # hidden layers: the question says "layers"; it does not say how many
N_IN, N_CLASSES = 784, 10
# Nielsen, NNDL ch. 1, network.py: net.SGD(training_data, 30, 10, 3.0) on [784, 30, 10]
# with the quadratic cost, the from-scratch MNIST net such questions start from.
NIELSEN_LR, NIELSEN_BATCH, NIELSEN_WIDTH = 3.0, 10, 30
# The first step moves an output's pre-activation by ~ lr x (sum over the hidden units of
# a^2), i.e. in proportion to lr x width: this keeps Nielsen's working lr x width.
SMALL_LR = NIELSEN_LR * NIELSEN_WIDTH / WIDTH
RELU_LR = 0.1  # Nielsen's eta in his ch. 5 runs (the lab's default lr)
NAN_LR = 10 * NIELSEN_LR  # ten times Nielsen's: where the hand-written logistic overflows
LOGISTICS = ("torch", "hand")  # nn.Sigmoid, or 1 / (1 + exp(-z)) written out
DETAIL_FIRST, DETAIL_EVERY = 10, 10  # detail steps: the first 10, then every 10th


class Logistic(nn.Sigmoid):
    """The logistic written out, 1 / (1 + exp(-z)), as a from-scratch implementation does.

    Its value is right, and autograd's derivative is right (to 1e-150) wherever exp(-z) is
    finite; for z < -709.78 (float64) exp(-z) overflows to inf, the value is 1 / inf = 0
    and the backward multiplies 0 by inf: NaN. nn.Sigmoid never forms exp(-z) for negative z.
    It subclasses nn.Sigmoid so the probe counts its saturation like a sigmoid's.
    """

    def forward(self, z: Tensor) -> Tensor:
        return 1.0 / (1.0 + torch.exp(-z))


def _one_of(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not one of: {', '.join(allowed)}")


def _count(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name}={value!r} is not valid: must be an int >= {low}")
    return int(value)


@dataclass(frozen=True)
class Variant:
    """One network and its training settings.

    Attributes:
        name, label: a short key (run directory) and a description.
        activation: hidden units, "sigmoid" or "relu".
        logistic: "torch" (nn.Sigmoid) or "hand" (`Logistic`), for sigmoid units.
        loss: "quadratic" on a sigmoid output, or "cross_entropy" on the logits.
        init: a gradprobe.lab.init initialiser; lr, batch_size: plain SGD's.
    """

    name: str
    label: str
    activation: str = "sigmoid"
    logistic: str = "torch"
    loss: str = "quadratic"
    init: str = "nielsen"
    lr: float = NIELSEN_LR
    batch_size: int = NIELSEN_BATCH

    def __post_init__(self) -> None:
        _one_of("activation", self.activation, ("sigmoid", "relu"))
        _one_of("logistic", self.logistic, LOGISTICS)
        _one_of("loss", self.loss, ("quadratic", "cross_entropy"))
        lr = self.lr
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < math.inf:
            raise ValueError(f"lr={lr!r} is not valid: must be a finite number > 0")
        _count("batch_size", self.batch_size, 1)


VARIANTS = {
    v.name: v
    for v in (
        Variant("broken", "quadratic cost on 1,000-unit sigmoid layers, eta 3 (Nielsen's)"),
        Variant("broken-nan", "the same with a hand-written logistic, eta 30", "sigmoid",
                "hand", lr=NAN_LR),
        Variant("fix-small-lr", f"the same, eta {SMALL_LR:g} (Nielsen's eta x width)",
                lr=SMALL_LR),
        Variant("fix-relu-ce", "ReLU + He init, cross-entropy from logits, eta 0.1", "relu",
                loss="cross_entropy", init="he_normal", lr=RELU_LR),
    )
}  # fmt: skip


def make_network(variant: Variant, seed: int, *, width=WIDTH, depth=DEPTH, n_in=N_IN):
    """The float64 MLP [n_in, width x depth, 10] of `variant`, drawn from `seed`'s init
    stream; a sigmoid output for the quadratic cost, logits for cross-entropy."""
    sizes = [_count("n_in", n_in, 1), *[_count("width", width, 1)] * _count("depth", depth, 1)]
    init_seed, _ = seed_streams(_count("seed", seed, 0))
    out = "sigmoid" if variant.loss == "quadratic" else None
    generator = torch.Generator().manual_seed(init_seed)
    model = mlp([*sizes, N_CLASSES], variant.activation, output_activation=out,
                init=variant.init, generator=generator).double()  # fmt: skip
    if variant.logistic == "hand":
        for name, module in list(model.named_children()):
            if isinstance(module, nn.Sigmoid):
                setattr(model, name, Logistic())
    return model


@dataclass(frozen=True, repr=False)
class Split:
    """float64 images x of shape (n, 784) in [0, 1), labels y of shape (n,)."""

    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor

    def __repr__(self) -> str:
        return f"Split({len(self.x_train)} train, {len(self.x_val)} validation, float64)"


def load_split(n_train: int, n_val: int, path=None) -> Split:
    """Nielsen's split: the first `n_train` training images, the first `n_val` of the
    10,000 validation images; pixels k / 256 as float64."""
    n_train, n_val = _count("n_train", n_train, 1), _count("n_val", n_val, 1)
    data = load_mnist(seed=0, path=path, limit_train=n_train)
    if n_val > len(data.x_val):
        raise ValueError(f"n_val={n_val} exceeds the {len(data.x_val)} validation images")
    x_val, y_val = data.x_val[:n_val], data.y_val[:n_val]
    return Split(data.x_train.double(), data.y_train, x_val.double(), y_val)


def batches(n: int, batch_size: int, steps: int, seed: int) -> Iterator[Tensor]:
    """`steps` index tensors of full batches, reshuffled each epoch from `seed`'s stream."""
    n, batch_size = _count("n", n, 1), _count("batch_size", batch_size, 1)
    if batch_size > n:
        raise ValueError(f"batch_size={batch_size} is larger than the {n} training examples")
    generator = torch.Generator().manual_seed(seed_streams(_count("seed", seed, 0))[1])
    per_epoch = n // batch_size
    for step in range(steps):
        if step % per_epoch == 0:
            perm = torch.randperm(n, generator=generator)
        j = step % per_epoch
        yield perm[j * batch_size : (j + 1) * batch_size]


class DetailSchedule:
    """Detail steps (abs_min_nonzero, saturation...): the first `first`, then every n-th.

    The first steps are where the tail of the activations is set (by the first update)."""

    def __init__(self, first: int = DETAIL_FIRST, every: int = DETAIL_EVERY) -> None:
        self.first, self.every = _count("first", first, 0), _count("every", every, 1)

    def __call__(self, index: int) -> bool:  # index: of the recorded step (every=1: step)
        return index < self.first or index % self.every == 0

    def __repr__(self) -> str:
        return f"DetailSchedule(first={self.first}, every={self.every})"


@dataclass(frozen=True, repr=False)
class NanRun:
    """One variant trained once: its Record, evaluations, status and findings."""

    variant: Variant
    seed: int
    record: Record
    evaluation: list[dict[str, Any]] = field(default_factory=list)
    run_dir: Path | None = None
    status: str = "done"
    error: str | None = None
    findings: tuple[Finding, ...] = ()

    @property
    def min_activation(self) -> float:
        """The smallest nonzero |activation| over every measured step and layer (inf: none)."""
        a = np.asarray(self.record["abs_min_nonzero"], dtype=np.float64)
        a = a[np.isfinite(a) & (a > 0)]
        return float(a.min()) if a.size else math.inf

    @property
    def log10_min_activation(self) -> float:
        """log10 of `min_activation`; NaN when nothing was measured."""
        return math.log10(self.min_activation) if self.min_activation < math.inf else math.nan

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kinds of gp.diagnose's findings on the record, most severe first."""
        return tuple(f.kind for f in self.findings)

    @property
    def finite_loss(self) -> np.ndarray:
        """The finite batch losses in step order, array of shape (n_finite,)."""
        loss = np.asarray(self.record.loss, dtype=np.float64)
        return loss[np.isfinite(loss)]

    def final(self, key: str) -> float:
        """The last evaluation's `key` (e.g. "val_accuracy"); NaN when there is none."""
        value = self.evaluation[-1].get(key) if self.evaluation else None
        return math.nan if value is None else float(value)

    def __repr__(self) -> str:
        return (
            f"NanRun({self.variant.name}, seed={self.seed}, {len(self.record)} steps, "
            f"{self.status}, min |a| 1e{self.log10_min_activation:.0f})"
        )


@torch.no_grad()
def evaluate(model: nn.Module, loss_fn, split: Split, epoch: float, step: int) -> dict:
    """Validation loss and accuracy (argmax) of `model`; None where not finite."""
    out = model(split.x_val)
    row = {"epoch": epoch, "step": step, "val_loss": float(loss_fn(out, split.y_val))}
    row["val_accuracy"] = float((out.argmax(1) == split.y_val).double().mean())
    return {k: (v if math.isfinite(v) else None) for k, v in row.items()}


def _loop(model, opt, loss_fn, probe, split, order, evaluate_at, spe) -> tuple[list, str | None]:
    """SGD over `order`; evaluates where `evaluate_at(step)`; (evaluation, error or None)."""
    evaluation = [evaluate(model, loss_fn, split, 0.0, 0)] if evaluate_at else []
    for step, idx in enumerate(order):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(split.x_train[idx]), split.y_train[idx])
        loss.backward()
        opt.step()
        probe.log_loss(loss)
        value = float(loss.detach())  # one host read a step: the loop stops at a NaN
        if not math.isfinite(value):
            return evaluation, f"the loss became non-finite ({value}) at step {step}"
        if evaluate_at and evaluate_at(step + 1):
            evaluation.append(evaluate(model, loss_fn, split, (step + 1) / spe, step + 1))
            probe.annotate(evaluation=evaluation)
    return evaluation, None


def train_variant(
    variant: Variant,
    split: Split,
    *,
    seed: int,
    steps: int,
    width: int = WIDTH,
    depth: int = DEPTH,
    eval_every: int | None = None,
    detail_every: int | Callable[[int], bool] | None = None,
    run_dir: str | Path | None = None,
) -> NanRun:
    """Train `variant` for `steps` SGD steps in float64 with the probe attached.

    Args:
        eval_every: evaluate on the validation images every this many steps and at the
            end (plus step 0); None: never.
        detail_every: the probe's detail schedule; None: `DetailSchedule()`.
        run_dir: the run directory (status done, or failed at a non-finite loss).
    """
    steps = _count("steps", steps, 1)
    model = make_network(variant, seed, width=width, depth=depth, n_in=split.x_train.shape[1])
    loss_fn = make_loss(variant.loss)
    opt = torch.optim.SGD(model.parameters(), lr=variant.lr)
    order = batches(len(split.x_train), variant.batch_size, steps, seed)
    at = None if eval_every is None else _count("eval_every", eval_every, 1)
    evaluate_at = None if at is None else (lambda s: s % at == 0 or s == steps)
    config = {**dataclasses.asdict(variant), "seed": seed, "steps": steps, "width": width,
              "depth": depth, "dtype": "float64", "n_train": len(split.x_train)}  # fmt: skip
    detail = detail_every or DetailSchedule()
    probe = watch(model, optimizer=opt, run_dir=run_dir, config=config, detail_every=detail,
                  overwrite=run_dir is not None)  # fmt: skip
    with probe:
        spe = len(split.x_train) // variant.batch_size
        evaluation, error = _loop(model, opt, loss_fn, probe, split, order, evaluate_at, spe)
        if error is not None:
            probe.close("failed", error)
    rec = probe.record()
    return NanRun(variant, seed, rec, evaluation, None if run_dir is None else Path(run_dir),
                  "done" if error is None else "failed", error, tuple(diagnose(rec)))  # fmt: skip
