"""The `weight-change` demo's pieces: data split, network, training loop, per-epoch means.

LazyProgrammer's unsupervised_class2/vanishing.py trains sigmoid layers [1000, 750, 500]
and a softmax output on MNIST with classical momentum and, after every batch, records
mean |W_new - W_old| per weight matrix. Here the probe records that quantity
(`weight_change_mean`) in a loop that follows the original step by step; every size is
a parameter, so tests run a small version in seconds.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradprobe.attach import watch
from gradprobe.lab.build import seed_streams
from gradprobe.lab.datasets.mnist import find_mnist, load_mnist
from gradprobe.lab.models import mlp

# Every default below is read off vanishing.py / util.py (lazyprogrammer/machine_learning_examples).
HIDDEN = (1000, 750, 500)  # main(): ANN([1000, 750, 500])
LR = 0.01  # fit(learning_rate=0.01); the cost is a batch mean (T.mean), so lr is not scaled
MOMENTUM = 0.99  # fit(mu=0.99): classical momentum v <- mu v - lr g, W <- W + v
BATCH_SIZE = 100  # fit(batch_sz=100)
EPOCHS = 30  # fit(epochs=30)
N_TRAIN = 41_000  # getKaggleMNIST(): the 42,000 Kaggle rows but the last 1,000
N_TEST = 1_000  # getKaggleMNIST(): the last 1,000 rows (never used by fit)
PIXEL_MAX = 255.0  # util.py: X / 255
LOG_EVERY = 100  # fit() prints cost and error every 100 batches (j % 100 == 0)
N_PIXELS, N_CLASSES = 784, 10
MNIST_TRAIN_IMAGES = 60_000  # the IDX training file; train and test both come from it


@dataclass(frozen=True, repr=False)
class Split:
    """Training and test data: x of shape (n, 784) in [0, 1], y of shape (n,) in 0..9."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    description: str = ""

    def __post_init__(self) -> None:
        for name in ("train", "test"):
            x, y = getattr(self, f"x_{name}"), getattr(self, f"y_{name}")
            if x.ndim != 2 or y.ndim != 1 or len(x) != len(y) or len(x) == 0:
                raise ValueError(
                    f"x_{name} of shape {tuple(x.shape)} and y_{name} of shape "
                    f"{tuple(y.shape)} do not fit: need (n, features) and (n,), n >= 1"
                )

    def __repr__(self) -> str:
        return f"Split({len(self.x_train)} train, {len(self.x_test)} test: {self.description})"


def _count(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name}={value!r} is not valid: must be an int >= {low}")
    return int(value)


def load_split(n_train: int = N_TRAIN, n_test: int = N_TEST, path=None) -> Split:
    """The original's split: the first `n_train` training images to train and the last
    `n_test` to test (disjoint), pixels k / 255. From the IDX files both come from the
    60,000 training images; from Kaggle's train.csv (the original's file), from its rows.

    Raises:
        ValueError: sizes < 1, or more images asked for than the file holds.
        FileNotFoundError: no MNIST files (see gradprobe.lab.datasets.mnist.find_mnist).
    """
    n_train, n_test = _count("n_train", n_train, 1), _count("n_test", n_test, 1)
    source = find_mnist(path)
    if source.layout == "csv":  # Kaggle's rows: the last n_test are the test set
        data = load_mnist(seed=0, path=path, limit_train=n_train, n_val=0, n_test=n_test)
        x_test, y_test, where = data.x_test, data.y_test, f"Kaggle CSV {source.files[0].name}"
    else:
        if n_train + n_test > MNIST_TRAIN_IMAGES:
            raise ValueError(
                f"n_train={n_train} + n_test={n_test} exceeds the {MNIST_TRAIN_IMAGES} MNIST "
                "training images they are both taken from"
            )
        data = load_mnist(seed=0, path=path, limit_train=n_train, n_val=n_test)
        x_test, y_test, where = data.x_val, data.y_val, f"MNIST {source.layout} training file"
    rescale = 256.0 / PIXEL_MAX  # load_mnist gives k / 256; the original divides by 255
    return Split(
        x_train=data.x_train * rescale,
        y_train=data.y_train,
        x_test=x_test * rescale,
        y_test=y_test,
        description=f"{where}: first {n_train} images train, last {n_test} test; pixels k / 255",
    )


def make_network(hidden: Sequence[int], seed: int, n_in: int = N_PIXELS) -> nn.Sequential:
    """Sigmoid layers `hidden` and a linear output of 10 logits (softmax is in the cost),
    weights N(0, 1 / (fan_in + fan_out)) and zero biases, drawn from `seed`'s init stream."""
    seed = _count("seed", seed, 0)
    sizes = [n_in, *(_count("hidden size", h, 1) for h in hidden), N_CLASSES]
    if len(sizes) < 3:
        raise ValueError(f"hidden={list(hidden)!r} is empty: need at least one hidden layer")
    init_seed, _ = seed_streams(seed)
    generator = torch.Generator().manual_seed(init_seed)
    return mlp(sizes, "sigmoid", "lazyprogrammer", generator=generator)


def make_optimizer(model: nn.Module, lr: float, momentum: float) -> torch.optim.SGD:
    """torch's SGD with classical momentum: buf <- mu buf + g, W <- W - lr buf, the
    original's v <- mu v - lr g, W <- W + v with v = -lr buf (lr fixed)."""
    if isinstance(lr, bool) or not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr={lr!r} is not valid: must be a finite number > 0")
    if isinstance(momentum, bool) or not (isinstance(momentum, (int, float)) and 0 <= momentum < 1):
        raise ValueError(f"momentum={momentum!r} is not valid: must be in [0, 1)")
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, nesterov=False)


def batch_orders(n: int, batch_size: int, epochs: int, seed: int) -> list[list[Tensor]]:
    """Per epoch, the index tensors of its batches: a fresh shuffle each epoch (the
    original's `shuffle(X, Y)`), n // batch_size full batches (its `N / batch_sz`)."""
    n, epochs = _count("n_train", n, 1), _count("epochs", epochs, 1)
    batch_size, seed = _count("batch_size", batch_size, 1), _count("seed", seed, 0)
    if batch_size > n:
        raise ValueError(f"batch_size={batch_size} is larger than the {n} training examples")
    _, order_seed = seed_streams(seed)
    generator = torch.Generator().manual_seed(order_seed)
    orders = []
    for _ in range(epochs):
        perm = torch.randperm(n, generator=generator)
        orders.append([perm[j * batch_size : (j + 1) * batch_size] for j in range(n // batch_size)])
    return orders


@torch.no_grad()
def _scores(model: nn.Module, x: Tensor, y: Tensor) -> tuple[float, float]:
    logits = model(x)
    return float(F.cross_entropy(logits, y)), float((logits.argmax(1) == y).float().mean())


def evaluate(model: nn.Module, split: Split, epoch: int, step: int) -> dict[str, Any]:
    """The cost and accuracy on the test set and on as many of the first training images."""
    n = len(split.x_test)
    train_loss, train_acc = _scores(model, split.x_train[:n], split.y_train[:n])
    test_loss, test_acc = _scores(model, split.x_test, split.y_test)
    row = {"epoch": epoch, "step": step, "train_loss": train_loss, "train_accuracy": train_acc}
    row.update(test_loss=test_loss, test_accuracy=test_acc)
    return {k: (v if math.isfinite(v) else None) for k, v in row.items()}


@dataclass(frozen=True, repr=False)
class WeightChangeRun:
    """One seed's run.

    Attributes:
        seed: the seed of the weights and the batch order.
        layers: the weight matrices' layer names, input first (fc1, ..., fcL).
        change: mean |W_t - W_{t-1}| per layer, array of shape (n_steps, n_layers).
        cost: the batch cost of each step, array of shape (n_steps,).
        steps_per_epoch: batches per epoch.
        movement: mean |W_T - W_0| / mean |W_0| per layer, shape (n_layers,).
        saturation: saturated_frac (sigmoid outputs within 3% of 0 or 1) per epoch and
            layer, shape (n_epochs, n_layers); NaN for the output layer.
        evaluation: one row per epoch (epoch, step, {train,test}_{loss,accuracy}).
        run_dir: the run directory (None: kept in memory).
        status: "done" or "failed" (a non-finite cost); error says why.
    """

    seed: int
    layers: tuple[str, ...]
    change: np.ndarray
    cost: np.ndarray
    steps_per_epoch: int
    movement: np.ndarray
    saturation: np.ndarray
    evaluation: list[dict[str, Any]] = field(default_factory=list)
    run_dir: Path | None = None
    status: str = "done"
    error: str | None = None

    def __repr__(self) -> str:
        return (
            f"WeightChangeRun(seed={self.seed}, {len(self.cost)} steps x {len(self.layers)} "
            f"layers, {self.status}, {self.run_dir or 'memory'})"
        )


def _relative_movement(model: nn.Module, initial: list[Tensor]) -> np.ndarray:
    now = [m.weight.detach() for m in model if isinstance(m, nn.Linear)]
    return np.array([float((w - w0).abs().mean() / w0.abs().mean()) for w, w0 in zip(now, initial)])


def _epoch(model, opt, probe, split: Split, batches, log: Callable[[str], None]) -> str | None:
    """One epoch of the original's loop; returns why it stopped early, or None."""
    for j, idx in enumerate(batches):
        opt.zero_grad(set_to_none=True)
        logits = model(split.x_train[idx])
        cost = F.cross_entropy(logits, split.y_train[idx])  # -mean log softmax, as T.mean
        cost.backward()
        opt.step()
        probe.log_loss(cost)
        if j % LOG_EVERY == 0:  # the original's progress line (one host read per 100 steps)
            c = float(cost.detach())
            error = float((logits.argmax(1) != split.y_train[idx]).float().mean())
            log(f"  j / n_batches: {j} / {len(batches)} cost: {c:.4f} error: {error:.3f}")
            if not math.isfinite(c):
                return f"the cost became non-finite ({c}) at batch {j}"
    return None


def train_one(
    split: Split,
    *,
    seed: int,
    hidden: Sequence[int] = HIDDEN,
    epochs: int = EPOCHS,
    batch_size: int = BATCH_SIZE,
    lr: float = LR,
    momentum: float = MOMENTUM,
    run_dir: str | Path | None = None,
    log: Callable[[str], None] = lambda _line: None,
) -> WeightChangeRun:
    """Train the demo's network once with the probe recording every step in detail.

    Returns:
        the WeightChangeRun; its run directory (when given) is readable by gradprobe.load,
        with status done, failed (non-finite cost) or interrupted (Ctrl-C, re-raised).
    """
    orders = batch_orders(len(split.x_train), batch_size, epochs, seed)
    model = make_network(hidden, seed, n_in=split.x_train.shape[1])
    opt = make_optimizer(model, lr, momentum)
    initial = [m.weight.detach().clone() for m in model if isinstance(m, nn.Linear)]
    config = {"seed": seed, "hidden": list(hidden), "epochs": epochs, "batch_size": batch_size}
    config.update(lr=lr, momentum=momentum, data=split.description)
    probe = watch(model, optimizer=opt, run_dir=run_dir, detail_every=1, weight_change=True,
                  config=config, overwrite=run_dir is not None)  # fmt: skip
    evaluation: list[dict[str, Any]] = []
    error = None
    with probe:
        probe.annotate(steps_per_epoch=len(orders[0]), n_train=len(split.x_train))
        for i, batches in enumerate(orders):
            log(f"seed {seed} epoch: {i}")
            error = _epoch(model, opt, probe, split, batches, log)
            if error is not None:
                probe.close("failed", f"{error} of epoch {i}")
                break
            evaluation.append(evaluate(model, split, i + 1, (i + 1) * len(batches)))
            probe.annotate(evaluation=evaluation)
    rec = probe.record()
    spe = len(orders[0])
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the output layer has no sigmoid
        saturation = epoch_means(rec["saturated_frac"], spe)
    return WeightChangeRun(
        seed=seed,
        layers=tuple(rec.layers),
        change=np.asarray(rec["weight_change_mean"], dtype=np.float64),
        cost=np.asarray(rec.loss, dtype=np.float64),
        steps_per_epoch=spe,
        movement=_relative_movement(model, initial),
        saturation=saturation,
        evaluation=evaluation,
        run_dir=None if run_dir is None else Path(run_dir),
        status="done" if error is None else "failed",
        error=error,
    )


def epoch_means(change: np.ndarray, steps_per_epoch: int) -> np.ndarray:
    """Mean over each epoch's steps (NaN ignored), array of shape (n_epochs, n_layers).

    Args:
        change: array of shape (n_steps, n_layers); a last partial epoch counts as one.
        steps_per_epoch: steps per epoch (>= 1).
    """
    change = np.asarray(change, dtype=np.float64)
    if change.ndim != 2 or len(change) == 0:
        raise ValueError(f"change of shape {change.shape} is not (n_steps >= 1, n_layers)")
    bad_type = isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, int)
    if bad_type or steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch={steps_per_epoch!r} must be an int >= 1")
    starts = range(0, len(change), steps_per_epoch)
    return np.stack([np.nanmean(change[s : s + steps_per_epoch], axis=0) for s in starts])


def label_entropy(y) -> float:
    """H(y) in nats: the cross-entropy of the best constant prediction (class frequencies)."""
    counts = np.bincount(np.asarray(y, dtype=np.int64))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())
