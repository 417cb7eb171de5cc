"""The pieces of Nielsen's ch. 5 speed-of-learning experiment, each with explicit sizes.

Nielsen's script (fig/generate_gradient.py of mnielsen/neural-networks-and-deep-learning)
builds `network2.Network(sizes)`: sigmoid units everywhere, the output included, weights
N(0, 1/n_in), biases N(0, 1), and the CrossEntropyCost C = -sum_j [y_j ln a_j + (1 - y_j)
ln(1 - a_j)], whose output error is delta^L = a - y. It averages the bias gradient dC/db^l
(= delta^l) over the first 1,000 training images and prints each hidden layer's Euclidean
norm. Then it trains by full-batch gradient descent, `net.SGD(td, 1, 1000, 0.1, lmbda=5.0)`
once per epoch, reading the same norms before each epoch's step.

Here the network is `gradprobe.lab.models.mlp(sizes, "sigmoid", "nielsen")` in float64
(numpy's precision) with its last Linear giving the logits z^L; the output sigmoid sits in
the cost, `gradprobe.lab.ensemble.cross_entropy_cost` (BCE from logits, the same C and the
same delta^L = sigmoid(z^L) - y, finite for any z).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gradprobe.attach import watch
from gradprobe.lab.ensemble import cross_entropy_cost
from gradprobe.lab.models import mlp
from gradprobe.lab.optim import make_optimizer

# Nielsen ch. 5 and fig/generate_gradient.py: the three networks, 1,000 images, 500 epochs.
NETWORKS: tuple[tuple[int, ...], ...] = (
    (784, 30, 30, 10),
    (784, 30, 30, 30, 10),
    (784, 30, 30, 30, 30, 10),
)
N_IMAGES = 1000  # "td = full_td[:1000]": the first 1,000 training images, unshuffled
EPOCHS = 500  # "epochs = 500"
ETA = 0.1  # net.SGD(td, 1, 1000, 0.1, lmbda=5.0): eta
LMBDA = 5.0  # ... lmbda: weights decay by eta * lmbda / n each step, biases not at all
N_CLASSES = 10


def network_key(sizes: Sequence[int]) -> str:
    """ "784-30-30-10": the key of a network's figures in published.json."""
    return "-".join(str(int(s)) for s in sizes)


def name_of(sizes: Sequence[int]) -> str:
    """ "[784,30,30,10]": a network as Nielsen writes it."""
    return "[" + ",".join(map(str, sizes)) + "]"


def _check_sizes(sizes: Sequence[int]) -> tuple[int, ...]:
    ok = isinstance(sizes, Sequence) and len(sizes) >= 3
    ok = ok and all(isinstance(s, numbers.Integral) and s >= 1 for s in sizes)
    if not ok or sizes[-1] != N_CLASSES:
        raise ValueError(
            f"sizes={sizes!r} must be [n_in, h1, ..., {N_CLASSES}]: ints >= 1, at least one "
            f"hidden layer, {N_CLASSES} outputs (one per digit)"
        )
    return tuple(int(s) for s in sizes)


def load_images(n_images: int = N_IMAGES, path=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `n_images` MNIST training images, in file order, pixels k / 256 in [0, 1).

    Args:
        n_images: how many, 1..50,000 (Nielsen's training set; he takes 1,000).
        path: where MNIST lies (None: $GRADPROBE_MNIST, then the default directory).

    Returns:
        (x, y): x float64 of shape (n_images, 784), y int64 labels of shape (n_images,).

    Raises:
        FileNotFoundError: MNIST is not on disk (the message says where to put it).
        ValueError: n_images outside 1..50,000.
    """
    from gradprobe.lab.datasets.mnist import load_mnist

    if not isinstance(n_images, numbers.Integral) or isinstance(n_images, bool):
        raise ValueError(f"n_images={n_images!r} must be an int in 1..50000")
    data = load_mnist(seed=0, path=path, limit_train=int(n_images))
    return data.x_train.double(), data.y_train.long()


def _check_data(x: torch.Tensor, y: torch.Tensor, n_in: int) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != n_in or len(x) < 1:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a tensor of shape (n >= 1, {n_in}); got {shape}")
    if not isinstance(y, torch.Tensor) or y.shape != (len(x),) or y.dtype.is_floating_point:
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"y must be integer labels of shape ({len(x)},); got {shape}")
    if int(y.min()) < 0 or int(y.max()) >= N_CLASSES:
        raise ValueError(
            f"labels must lie in 0..{N_CLASSES - 1}; got {int(y.min())}..{int(y.max())}"
        )


def nielsen_network(sizes: Sequence[int], seed: int) -> nn.Sequential:
    """network2.Network(sizes) in torch, float64: fc1, act1 (sigmoid), ..., fcL (logits).

    Weights N(0, 1/n_in), biases N(0, 1) (the lab's "nielsen" initialiser), drawn from
    torch.Generator().manual_seed(seed) in float32 and widened to float64.
    """
    sizes = _check_sizes(sizes)
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed={seed!r} must be an int >= 0")
    generator = torch.Generator().manual_seed(int(seed))
    return mlp(sizes, "sigmoid", "nielsen", generator=generator).double()


def nielsen_cost(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Nielsen's CrossEntropyCost of sigmoid outputs, averaged over the examples.

    Args:
        logits: z^L of shape (n, 10).
        y: int labels of shape (n,); the targets are their one-hot vectors.

    Returns:
        the scalar C = -1/n sum_x sum_j [y_j ln a_j + (1 - y_j) ln(1 - a_j)], a = sigmoid(z).
    """
    return cross_entropy_cost(logits, F.one_hot(y, logits.shape[-1]).to(logits.dtype))


def hidden_bias_norms(model: nn.Sequential) -> np.ndarray:
    """||dC/db^l|| of each hidden layer from the bias gradients now held, shape (L - 1,)."""
    linears = [m for m in model if isinstance(m, nn.Linear)]
    return np.array([float(m.bias.grad.norm()) for m in linears[:-1]])


def initial_speeds(sizes: Sequence[int], seeds: Sequence[int], x, y) -> np.ndarray:
    """Nielsen's speed of each hidden layer at initialisation, one row per seed.

    Args:
        sizes: [784, h1, ..., 10].
        seeds: the initialisation seeds.
        x, y: images of shape (n, sizes[0]) and their int labels (n,).

    Returns:
        array of shape (n_seeds, n_hidden): ||dC/db^l||, dC/db^l averaged over the n images.
    """
    sizes = _check_sizes(sizes)
    _check_data(x, y, sizes[0])
    rows = []
    for seed in seeds:
        model = nielsen_network(sizes, seed)
        nielsen_cost(model(x.double()), y.long()).backward()
        rows.append(hidden_bias_norms(model))
    return np.array(rows).reshape(len(rows), len(sizes) - 2)


def record_initial(sizes: Sequence[int], seed: int, x, y, run_dir: str | Path) -> Path:
    """One probe-recorded step at initialisation (the gradient only, no update).

    Its Record's row 0 is what Nielsen's bar chart shows: delta_norm = ||dC/db^l|| per
    layer (the output layer fcL included). Returns the run directory.
    """
    sizes = _check_sizes(sizes)
    _check_data(x, y, sizes[0])
    model = nielsen_network(sizes, seed)
    config = {"sizes": list(sizes), "seed": int(seed), "n_images": len(x), "what": "init"}
    with watch(model, run_dir=run_dir, detail_every=1, overwrite=True, config=config) as probe:
        loss = nielsen_cost(model(x.double()), y.long())
        loss.backward()
        probe.log_loss(loss)
        probe.step()
    return Path(run_dir)


def train_speeds(
    sizes: Sequence[int],
    seed: int,
    x,
    y,
    run_dir: str | Path,
    *,
    epochs: int = EPOCHS,
    eta: float = ETA,
    lmbda: float = LMBDA,
) -> np.ndarray:
    """Full-batch gradient descent as Nielsen's curves, recorded with gradprobe.watch.

    Each epoch is one step on all n images: w <- (1 - eta lmbda / n) w - eta dC/dw,
    b <- b - eta dC/db; the probe records delta_norm = ||dC/db^l|| before each step.

    Args:
        sizes, seed: the network and its initialisation seed.
        x, y: images (n, sizes[0]) and int labels (n,).
        run_dir: where the probe writes the run.
        epochs, eta, lmbda: Nielsen's 500, 0.1 and 5.0.

    Returns:
        array of shape (epochs, n_hidden): the recorded speed of each hidden layer.
    """
    sizes = _check_sizes(sizes)
    _check_data(x, y, sizes[0])
    if not isinstance(epochs, numbers.Integral) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"epochs={epochs!r} must be an int >= 1")
    model = nielsen_network(sizes, seed)
    opt = make_optimizer("sgd", model, lr=eta, l2=lmbda, n_train=len(x))
    x, y = x.double(), y.long()
    config = {"sizes": list(sizes), "seed": int(seed), "n_images": len(x), "epochs": epochs,
              "eta": eta, "lmbda": lmbda, "batch_size": len(x)}  # fmt: skip
    with watch(model, opt, run_dir=run_dir, overwrite=True, config=config) as probe:
        probe.annotate(steps_per_epoch=1)
        for _ in range(epochs):
            opt.zero_grad(set_to_none=True)
            loss = nielsen_cost(model(x), y)
            loss.backward()
            opt.step()  # the probe's post-step hook ends the step
            probe.log_loss(loss)
        rec = probe.record()
    return hidden_speeds(rec, len(sizes) - 2)


def hidden_speeds(rec, n_hidden: int) -> np.ndarray:
    """A Record's delta_norm (= ||dC/db^l||) of hidden layers fc1..fc{n_hidden}.

    Returns:
        array of shape (n_steps, n_hidden).
    """
    columns = [rec.layers.index(f"fc{i}") for i in range(1, n_hidden + 1)]
    return rec["delta_norm"][:, columns]


def ordered(speeds: np.ndarray) -> np.ndarray:
    """Whether each layer is slower than the next, along the last axis.

    Args:
        speeds: array of shape (..., n_hidden).

    Returns:
        bool array of shape (...): speeds[..., l] < speeds[..., l + 1] for every l.
    """
    speeds = np.asarray(speeds, dtype=float)
    return np.all(speeds[..., :-1] < speeds[..., 1:], axis=-1)


def layer_ratios(speeds: np.ndarray) -> np.ndarray:
    """speed^l / speed^{l+1} along the last axis: shape (..., n_hidden - 1)."""
    speeds = np.asarray(speeds, dtype=float)
    return speeds[..., :-1] / speeds[..., 1:]


@dataclass
class NetworkRun:
    """One network's measurements.

    Attributes:
        sizes: the network, [784, 30, ..., 10].
        initial: ||dC/db^l|| at initialisation, array of shape (n_seeds, n_hidden).
        init_run: the probe-recorded step at initialisation of the first seed.
        curves: seed -> the speeds per epoch, array of shape (epochs, n_hidden).
        curve_runs: seed -> the training run's directory.
    """

    sizes: tuple[int, ...]
    initial: np.ndarray
    init_run: Path
    curves: dict[int, np.ndarray] = field(default_factory=dict)
    curve_runs: dict[int, Path] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (
            f"NetworkRun({name_of(self.sizes)}, {len(self.initial)} seeds, mean speeds "
            f"{np.round(self.initial.mean(0), 4).tolist()}, {len(self.curves)} curves)"
        )


def measure_network(
    sizes, seeds, n_curve: int, data, out: Path, epochs: int, say: Callable[[str], None]
):
    """A NetworkRun: speeds at init over `seeds`, the first seed's init step recorded, and
    `epochs` of training recorded for each of the first `n_curve` seeds."""
    (x, y), key = data, network_key(sizes)
    initial = initial_speeds(sizes, seeds, x, y)
    say(f"{key}: ||dC/db|| at init, mean of {len(seeds)} seeds {initial.mean(0).round(4)}")
    init_run = record_initial(sizes, seeds[0], x, y, out / "init" / f"{key}-seed{seeds[0]}")
    result = NetworkRun(tuple(sizes), initial, init_run)
    for seed in seeds[:n_curve]:
        result.curve_runs[seed] = out / "curves" / f"{key}-seed{seed}"
        result.curves[seed] = train_speeds(
            sizes, seed, x, y, result.curve_runs[seed], epochs=epochs
        )
        say(f"{key} seed {seed}: {epochs} epochs of full-batch gradient descent recorded")
    return result
