"""The two-circles tutorial's networks and its Keras training loop, alone or many seeds at once.

Brownlee's "How to Fix the Vanishing Gradients Problem Using the ReLU" (2019) trains, in
Keras, Dense layers of 5 units on make_circles(1000, noise=0.1, random_state=1) scaled to
[-1, 1], 500 train / 500 test points, binary cross-entropy on one sigmoid output, SGD(lr=0.01,
momentum=0.9), 500 epochs of model.fit's default batch_size=32, shuffled each epoch.
Keras's SGD (v <- m v - lr g; w <- w + v) equals torch's (b <- m b + g; w <- w - lr b) at a
constant lr; a sigmoid output with binary cross-entropy is BCE from the logit.

`train_alone` trains one seed with the probe on (a run directory the report can draw);
`train_members` trains many seeds as one stacked network, each member exactly its own
loop (its own weights, data order, and gradient, since the loss is the sum of the members'
losses and SGD with momentum acts elementwise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gradprobe.attach import watch
from gradprobe.lab.build import seed_streams
from gradprobe.lab.datasets import Dataset, load_dataset
from gradprobe.lab.init import initialise_
from gradprobe.lab.models import mlp
from gradprobe.record import Record

LR, MOMENTUM = 0.01, 0.9  # the tutorial's SGD(lr=0.01, momentum=0.9)
BATCH = 32  # Keras model.fit's default batch_size; the tutorial passes none
EPOCHS = 500  # the tutorial's model.fit(..., epochs=500)
WIDTH = 5  # Dense(5, ...) in every hidden layer of the tutorial
ACTIVATIONS = ("tanh", "relu")


@dataclass(frozen=True)
class Net:
    """One of the tutorial's networks.

    Attributes:
        key: its name in published.json ("tanh1", "tanh5", "relu5") or "relu{depth}".
        activation: hidden activation, tanh or relu.
        depth: hidden layers of WIDTH units.
        init: the hidden layers' kernel initialiser (gradprobe.lab.init name).
        output_init: the sigmoid output layer's kernel initialiser.
    """

    key: str
    activation: str
    depth: int
    init: str
    output_init: str

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"activation={self.activation!r} is not one of: {', '.join(ACTIVATIONS)}"
            )
        if isinstance(self.depth, bool) or not isinstance(self.depth, int) or self.depth < 1:
            raise ValueError(f"depth={self.depth!r} must be an int >= 1 (hidden layers)")

    @property
    def sizes(self) -> list[int]:
        """[2, 5, ..., 5, 1]: two inputs, `depth` hidden layers, one output logit."""
        return [2, *[WIDTH] * self.depth, 1]

    def build(self, seed: int) -> nn.Sequential:
        """The network of `seed`, drawn from the lab's init stream of that seed (so tanh nets
        equal gradprobe.lab.build's); Keras's zero biases."""
        gen = torch.Generator().manual_seed(seed_streams(seed)[0])
        model = mlp(self.sizes, self.activation, self.init, bias_init="zeros", generator=gen)
        if self.output_init != self.init:  # Keras: Dense(1, activation='sigmoid') default init
            initialise_(model[-1], self.output_init, bias="zeros", generator=gen)
        return model


# (a) and (b): every Dense has kernel_initializer=RandomUniform(minval=0, maxval=1), the output
# layer included; (c): he_uniform hidden layers, the output Dense(1, activation='sigmoid')
# left at Keras's default glorot_uniform (the tutorial's code listings).
TANH1 = Net("tanh1", "tanh", 1, "uniform", "uniform")
TANH5 = Net("tanh5", "tanh", 5, "uniform", "uniform")
RELU5 = Net("relu5", "relu", 5, "he_uniform", "glorot_uniform")


def relu_net(depth: int) -> Net:
    """The tutorial's ReLU + He-uniform network with `depth` hidden layers."""
    return Net(f"relu{depth}", "relu", depth, "he_uniform", "glorot_uniform")


def circles(seed: int = 0) -> Dataset:
    """The tutorial's data (the points do not depend on `seed`: random_state=1 fixes them)."""
    return load_dataset("circles", seed=seed)


def order_generator(seed: int) -> torch.Generator:
    """The data-order stream of `seed`, as gradprobe.lab.build draws it."""
    return torch.Generator().manual_seed(seed_streams(seed)[1])


def bce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Batch-mean binary cross-entropy from logits (..., B, 1) and 0/1 labels (..., B)."""
    z = logits[..., 0]  # (..., B)
    return F.binary_cross_entropy_with_logits(z, y.to(z.dtype), reduction="none").mean(-1)


@torch.no_grad()
def accuracy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Fraction with (logit > 0) == label, as Keras's binary_accuracy (p > 0.5): (...,)."""
    return ((logits[..., 0] > 0).long() == y).double().mean(-1)


def steps_per_epoch(n_train: int) -> int:
    """Mini-batches per epoch: ceil(n_train / BATCH), the last one shorter (16 for 500)."""
    return -(-n_train // BATCH)


def binomial_sd(p: float, n: int = 500) -> float:
    """sd of an accuracy p measured on n points: the resolution a 500-point test set has."""
    return math.sqrt(p * (1.0 - p) / n)


def per_epoch(values: np.ndarray, epochs: int) -> np.ndarray:
    """Steps (n_steps, L) -> epoch means (epochs, L), ignoring steps not measured (NaN)."""
    per = values[: epochs * (len(values) // epochs)].reshape(epochs, -1, values.shape[1])
    return np.nanmean(per, axis=1)


def check_epochs(epochs: int) -> int:
    """`epochs` if an int >= 1; ValueError otherwise."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs={epochs!r} must be an int >= 1")
    return epochs


def train_alone(
    net: Net, seed: int, *, epochs: int = EPOCHS, run_dir: str | Path | None = None,
    detail_every: int = 1, data: Dataset | None = None,
) -> tuple[nn.Sequential, Record]:  # fmt: skip
    """Train `net` of `seed` with gp.watch on, evaluating train/test accuracy every epoch.

    Args:
        net: which network.
        seed: its init and data-order seed.
        epochs: passes over the 500 training points.
        run_dir: the run directory (None: in memory); each epoch's evaluation goes into
            its meta["evaluation"], as gradprobe.lab.train writes it.
        detail_every: the probe's detail schedule (grad_abs_mean is a detail quantity).
        data: the circles Dataset (None: load it).

    Returns:
        (the trained model, its Record).
    """
    data = data or circles(seed)
    model, gen = net.build(seed), order_generator(seed)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    config = {"net": net.key, "seed": seed, "epochs": check_epochs(epochs), "lr": LR,
              "momentum": MOMENTUM, "batch_size": BATCH, "sizes": net.sizes}  # fmt: skip
    probe = watch(model, optimizer=opt, run_dir=run_dir, detail_every=detail_every,
                  config=config, overwrite=run_dir is not None)  # fmt: skip
    x, y, n = data.x_train, data.y_train, len(data.x_train)
    rows = []
    with probe:
        probe.annotate(name=f"{net.key} seed {seed}", dataset=data.description)
        for epoch in range(1, epochs + 1):
            order = torch.randperm(n, generator=gen)
            for start in range(0, n, BATCH):
                idx = order[start : start + BATCH]
                opt.zero_grad(set_to_none=True)
                loss = bce(model(x[idx]), y[idx])
                loss.backward()
                opt.step()
                probe.log_loss(loss)
            rows.append(_evaluate(model, data, epoch, epoch * steps_per_epoch(n)))
            probe.annotate(evaluation=rows)
    return model, probe.record()


@torch.no_grad()
def _evaluate(model: nn.Module, data: Dataset, epoch: int, step: int) -> dict:
    row: dict = {"epoch": epoch, "step": step}
    for split in ("train", "test"):
        out = model(getattr(data, f"x_{split}"))
        y = getattr(data, f"y_{split}")
        row[f"{split}_loss"] = float(bce(out, y))
        row[f"{split}_accuracy"] = float(accuracy(out, y))
    return row


@dataclass(frozen=True, repr=False)
class Members:
    """Many seeds of one network, trained side by side.

    Attributes:
        net: the network.
        seeds: the members' seeds, shape (M,).
        train_accuracy, test_accuracy: array of shape (epochs, M), after each epoch.
        grad_abs_mean: array of shape (epochs, M, L): per layer, mean |dC/dW| over the
            kernel's elements, averaged over the epoch's steps (the tutorial's TensorBoard
            "average gradient per layer per epoch").
        models: the members as trained nn.Sequential models.
    """

    net: Net
    seeds: tuple[int, ...]
    train_accuracy: np.ndarray
    test_accuracy: np.ndarray
    grad_abs_mean: np.ndarray
    models: tuple[nn.Sequential, ...]

    def __repr__(self) -> str:
        final = self.test_accuracy[-1]
        return (
            f"Members({self.net.key}, {len(self.seeds)} seeds, {len(self.test_accuracy)} "
            f"epochs, final test accuracy {final.mean():.3f} +- {final.std():.3f})"
        )


def _stack(models: list[nn.Sequential]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per Linear layer, weights (M, out, in) and biases (M, out) as fresh leaf tensors."""
    linears = [[m for m in model if isinstance(m, nn.Linear)] for model in models]
    layers = list(zip(*linears))  # per layer, the members' Linear modules
    weights = [torch.stack([m.weight.detach() for m in ms]).requires_grad_() for ms in layers]
    return weights, [torch.stack([m.bias.detach() for m in ms]).requires_grad_() for ms in layers]


def _forward(weights, biases, act, x: torch.Tensor) -> torch.Tensor:
    """Logits (M, B, 1) of inputs x (M, B, 2): each member its own network."""
    for i, (w, b) in enumerate(zip(weights, biases)):
        x = torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))  # (M, B, out)
        if i < len(weights) - 1:
            x = act(x)
    return x


def _epoch(weights, biases, act, opt, data: Dataset, gens) -> np.ndarray:
    """One shuffled pass for every member; returns the epoch's mean |dC/dW|, (M, L)."""
    x, y, n = data.x_train, data.y_train, len(data.x_train)
    order = torch.stack([torch.randperm(n, generator=g) for g in gens])  # (M, n)
    abs_sums = [torch.zeros_like(w) for w in weights]
    for start in range(0, n, BATCH):
        idx = order[:, start : start + BATCH]  # (M, b)
        opt.zero_grad(set_to_none=True)
        bce(_forward(weights, biases, act, x[idx]), y[idx]).sum().backward()
        torch._foreach_add_(abs_sums, torch._foreach_abs([w.grad for w in weights]))
        opt.step()
    means = torch.stack([a.double().mean((1, 2)) for a in abs_sums], 1)  # (M, L)
    return (means / steps_per_epoch(n)).numpy()


@torch.no_grad()
def _unstack(models, weights, biases) -> None:
    """Each member's trained weights into its solo model."""
    for m, model in enumerate(models):
        for layer, w, b in zip([x for x in model if isinstance(x, nn.Linear)], weights, biases):
            layer.weight.copy_(w[m])
            layer.bias.copy_(b[m])


def train_members(net: Net, seeds, *, epochs: int = EPOCHS, data: Dataset | None = None) -> Members:
    """Train `net` once per seed, all at once; member i equals train_alone(net, seeds[i])
    up to float32 rounding (bmm instead of addmm), without the probe.

    Raises:
        ValueError: no seeds, a repeated or negative seed, or epochs < 1.
    """
    seeds = tuple(int(s) for s in seeds)
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(f"seeds={list(seeds)} must be distinct ints >= 0, at least one")
    data = data or circles(seeds[0])
    models = [net.build(s) for s in seeds]
    weights, biases = _stack(models)
    opt = torch.optim.SGD([*weights, *biases], lr=LR, momentum=MOMENTUM)
    act = torch.tanh if net.activation == "tanh" else torch.relu
    gens = [order_generator(s) for s in seeds]
    acc, grads = {"train": [], "test": []}, []
    for _ in range(check_epochs(epochs)):
        grads.append(_epoch(weights, biases, act, opt, data, gens))
        with torch.no_grad():
            for split in acc:
                x = getattr(data, f"x_{split}").expand(len(seeds), -1, -1)
                logits = _forward(weights, biases, act, x)
                acc[split].append(accuracy(logits, getattr(data, f"y_{split}")).numpy())
    _unstack(models, weights, biases)
    return Members(net, seeds, np.array(acc["train"]), np.array(acc["test"]),
                   np.array(grads), tuple(models))  # fmt: skip
