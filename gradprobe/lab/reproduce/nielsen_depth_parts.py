"""Nielsen's depth experiment, the pieces: his MNIST split, and M seeds of one network
trained side by side (gradprobe.lab.ensemble) with the validation accuracy after each epoch.

Nielsen (NNDL ch. 5, network2.py) trains [784, 30, ..., 30, 10] sigmoid networks with
cross-entropy on sigmoid outputs, weights N(0, 1/n_in), biases N(0, 1), mini-batches of
10, eta 0.1 and L2 lambda 5.0 (w <- (1 - eta lambda / n) w - eta dC/dw), shuffling the
50,000 training images every epoch and measuring accuracy on the 10,000 validation ones.
`train_depth` runs exactly that loop for each seed: each epoch is one call of
`train_ensemble` (plain SGD keeps no state between calls, and each member's data-order
generator carries on, so the calls are one run), then every member is evaluated and its
probe record of the epoch is appended to its run directory with the evaluation row.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gradprobe.lab.ensemble import cross_entropy_cost, train_ensemble
from gradprobe.lab.models import mlp
from gradprobe.probe.probe import status_of
from gradprobe.record.sink import RunDirSink

# Nielsen, NNDL ch. 5 ("The vanishing gradient problem"): the four networks compared.
NETWORKS = ((784, 30, 10), (784, 30, 30, 10), (784, 30, 30, 30, 10), (784, 30, 30, 30, 30, 10))
BATCH_SIZE, ETA, LAMBDA = 10, 0.1, 5.0  # NNDL ch. 5: mini-batch 10, eta 0.1, lambda 5.0
N_TRAIN, N_VAL = 50_000, 10_000  # mnist_loader: train[:50000], validation train[50000:]
# Data-order seeds sit this far from the initialisation seeds: two separate streams.
DATA_SEED_OFFSET = 1_000_000
RECORDS_PER_EPOCH = 10  # probe steps kept per epoch: enough for a speed line, small on disk


@dataclass(frozen=True)
class DepthData:
    """Nielsen's MNIST split as float32 tensors on the CPU.

    Attributes:
        x_train, y_train: training images (n_train, 784) in [0, 1) and labels (n_train,).
        x_val, y_val: validation images (n_val, 784) and labels (n_val,).
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor

    def __repr__(self) -> str:
        return f"DepthData({len(self.x_train)} train, {len(self.x_val)} validation images)"


def load_depth_data(n_train: int = N_TRAIN, n_val: int = N_VAL, path=None) -> DepthData:
    """The first n_train training images and the first n_val of the validation ones.

    Args:
        n_train: 1..50,000 (Nielsen: all 50,000).
        n_val: 1..10,000 (Nielsen: all 10,000, train[50000:60000]).
        path: where MNIST lies (see gradprobe.lab.datasets.mnist.find_mnist); None: search.

    Raises:
        ValueError: n_train or n_val out of range.
        FileNotFoundError: MNIST is not on disk (the message says where to put it).
    """
    from gradprobe.lab.datasets.mnist import load_mnist

    for name, value, top in (("n_train", n_train, N_TRAIN), ("n_val", n_val, N_VAL)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
            raise ValueError(f"{name}={value!r} must be an int in 1..{top} (Nielsen's split)")
    d = load_mnist(seed=0, path=path, limit_train=n_train)
    return DepthData(d.x_train, d.y_train, d.x_val[:n_val], d.y_val[:n_val])


def network_name(sizes: Sequence[int]) -> str:
    """ "784-30-30-10" for [784, 30, 30, 10]: the key of its published figure and its runs."""
    return "-".join(str(s) for s in sizes)


@dataclass(frozen=True)
class DepthRun:
    """One network trained from several seeds.

    Attributes:
        sizes: the layer sizes [784, 30, ..., 10].
        seeds: the seeds, one member each (initialisation seed; data order seed + offset).
        val_accuracy: fraction correct on the validation set, shape (n_seeds, epochs).
        val_loss: Nielsen's cross-entropy on the validation set, shape (n_seeds, epochs).
        run_dirs: each seed's run directory (empty when kept in memory).
        seconds_per_epoch: mean wall time of one training epoch of all seeds together.
    """

    sizes: tuple[int, ...]
    seeds: tuple[int, ...]
    val_accuracy: np.ndarray
    val_loss: np.ndarray
    run_dirs: tuple[Path, ...]
    seconds_per_epoch: float

    @property
    def name(self) -> str:
        return network_name(self.sizes)

    @property
    def final_accuracy(self) -> np.ndarray:
        """Validation accuracy after the last epoch, in percent, shape (n_seeds,)."""
        return 100.0 * self.val_accuracy[:, -1]

    def __repr__(self) -> str:
        acc = self.final_accuracy
        return (
            f"DepthRun({self.name}, {len(self.seeds)} seeds, {self.val_accuracy.shape[1]} "
            f"epochs, final val accuracy {acc.mean():.2f}% +- {acc.std():.2f})"
        )


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(fraction of x classified as y by the largest output, mean cross-entropy cost)."""
    z = model(x)  # (n, 10) logits; the largest logit is the largest sigmoid output
    cost = cross_entropy_cost(z, F.one_hot(y, z.shape[1]).to(z.dtype))
    return float((z.argmax(1) == y).double().mean()), float(cost)


def _sinks(out: Path | None, sizes, seeds, epochs: int, n_train: int) -> list[RunDirSink]:
    if out is None:
        return []
    config = {
        "experiment": "nielsen-depth", "sizes": list(sizes), "activation": "sigmoid",
        "init": "nielsen", "cost": "nielsen cross-entropy", "epochs": epochs,
        "batch_size": BATCH_SIZE, "lr": ETA, "l2": LAMBDA, "n_train": n_train,
    }  # fmt: skip
    return [
        RunDirSink(Path(out) / f"seed{s}", config={**config, "seed": s}, overwrite=True)
        for s in seeds
    ]


def _evaluation_row(epoch: int, n_steps: int, accuracy: float, cost: float) -> dict:
    """The row gradprobe.lab.train writes per epoch; None for a non-finite value (JSON)."""
    finite = {k: float(v) if math.isfinite(v) else None
              for k, v in (("val_loss", cost), ("val_accuracy", accuracy))}  # fmt: skip
    return {"epoch": epoch, "step": epoch * n_steps, **finite}


def _relay(sink: RunDirSink, rec, offset: int, first: bool) -> None:
    """Append one epoch's Record to a run directory, its steps moved on by `offset`."""
    if first:
        sink.write_layers(rec.layer_info)
        sink.set_meta(**{k: rec.meta[k] for k in ("device", "layers", "torch_seed")})
    if len(rec):
        values = {q: rec[q] for q in rec.quantities}
        sink.append(rec.steps + offset, values, dict(rec.step_values))


def _check_train_args(sizes, seeds, epochs) -> None:
    if tuple(sizes) not in NETWORKS:
        shown = ", ".join(str(list(n)) for n in NETWORKS)
        raise ValueError(f"sizes={list(sizes)} is not one of Nielsen's networks: {shown}")
    if not seeds:
        raise ValueError("seeds=() is empty; give at least one seed")
    if len(set(seeds)) != len(seeds) or any(
        isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds
    ):
        raise ValueError(f"seeds={list(seeds)} must be distinct ints >= 0")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs={epochs!r} must be an int >= 1")


def train_depth(
    sizes: Sequence[int],
    seeds: Sequence[int],
    data: DepthData,
    *,
    epochs: int,
    out: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> DepthRun:
    """Train `sizes` once per seed, Nielsen's way, evaluating after every epoch.

    Args:
        sizes: one of `NETWORKS`.
        seeds: member i starts from mlp(sizes, "sigmoid", "nielsen") drawn with seed i
            and shuffles with torch.randperm from seed i + DATA_SEED_OFFSET.
        data: the split (`load_depth_data`).
        epochs: passes over data.x_train (Nielsen: 30).
        out: write seed s's run to OUT/seed{s} (gradprobe.load reads it; its meta holds
            the evaluation rows training_curves draws); None keeps nothing on disk.
        log: called with one line per epoch.

    An exception (Ctrl-C included) marks every run failed or interrupted; the runs keep
    the epochs finished before it.

    Returns:
        the DepthRun: validation accuracy and cost per seed and epoch.
    """
    _check_train_args(sizes, seeds, epochs)
    seeds = tuple(int(s) for s in seeds)
    models = [mlp(sizes, "sigmoid", "nielsen", generator=torch.Generator().manual_seed(s))
              for s in seeds]  # fmt: skip
    gens = [torch.Generator().manual_seed(DATA_SEED_OFFSET + s) for s in seeds]
    n_steps = math.ceil(len(data.x_train) / BATCH_SIZE)
    every = max(1, n_steps // RECORDS_PER_EPOCH)
    sinks = _sinks(out, sizes, seeds, epochs, len(data.x_train))
    scores = np.zeros((2, len(seeds), epochs))  # accuracy, cost
    rows: list[list[dict]] = [[] for _ in seeds]
    seconds = 0.0
    try:
        for epoch in range(epochs):
            start = time.perf_counter()
            records = train_ensemble(
                models, data.x_train, data.y_train, epochs=1, batch_size=BATCH_SIZE, lr=ETA,
                l2=LAMBDA, generators=gens, every=every, detail_every=1,
            )  # fmt: skip
            seconds += time.perf_counter() - start
            for m, (model, rec) in enumerate(zip(models, records)):
                scores[:, m, epoch] = evaluate(model, data.x_val, data.y_val)
                rows[m].append(_evaluation_row(epoch + 1, n_steps, *scores[:, m, epoch]))
                if sinks:
                    _relay(sinks[m], rec, epoch * n_steps, epoch == 0)
                    sinks[m].set_meta(evaluation=rows[m])
            if log is not None:
                acc = 100 * scores[0, :, epoch]
                log(f"{network_name(sizes)} epoch {epoch + 1}/{epochs}: validation accuracy "
                    f"mean {acc.mean():.2f}% (range {acc.min():.2f}-{acc.max():.2f}, "
                    f"{len(seeds)} seeds), {time.perf_counter() - start:.1f} s")  # fmt: skip
    except BaseException as exc:
        for sink in sinks:
            sink.finish(*status_of(exc))
        raise
    for sink in sinks:
        sink.finish("done")
    dirs = tuple(sink.run.path for sink in sinks)
    return DepthRun(tuple(sizes), seeds, scores[0], scores[1], dirs, seconds / epochs)
