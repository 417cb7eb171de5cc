"""`gradprobe demo`: the vanishing gradient on embedded data, in well under a minute.

Two nets of the same depth train on scikit-learn's 8x8 digits (no download): sigmoid
units with Nielsen's init, and ReLU units with He init. Their learning speed per layer,
Nielsen's ||delta^l|| (the probe's delta_norm), is averaged over the first epoch's steps
and printed side by side, with one sentence on what the numbers show.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gradprobe.lab.config import Experiment
from gradprobe.lab.sweep import first_epoch_speed
from gradprobe.lab.trainer import TrainResult, train

# Five hidden layers: deep enough that the sigmoid's slope of at most 1/4 shrinks the
# gradient plainly (Nielsen ch. 5 shows it with 2-4), shallow enough to train in seconds.
DEMO_DEPTH = 5
DEMO_WIDTH = 32  # a little wider than Nielsen's 30, to keep ReLU nets from dying units
DEMO_EPOCHS = 5  # digits has 1197 training images: 120 steps of 10 per epoch
DEMO_LR = 0.1  # Nielsen's eta for cross-entropy; the same for both nets, a fair race
DEMO_SEED = 0  # fixed, so the printed numbers are the same on every machine
NETS = {  # name -> (activation, init, what the table calls it)
    "sigmoid": ("sigmoid", "nielsen", "sigmoid + Nielsen init"),
    "relu": ("relu", "he_normal", "ReLU + He init"),
}


@dataclass(frozen=True, repr=False)
class DemoResult:
    """The two runs of the demo and what it printed.

    Attributes:
        results: net name ("sigmoid", "relu") -> its TrainResult.
        layers: layer names, input side first, length n_layers.
        speed: net name -> array of shape (n_layers,): delta_norm averaged over the
            first epoch's steps.
        sentence: the one-sentence reading of the numbers.
    """

    results: dict[str, TrainResult]
    layers: list[str]
    speed: dict[str, np.ndarray]
    sentence: str

    def __repr__(self) -> str:
        return f"DemoResult({', '.join(self.results)}, {len(self.layers)} layers)"


def demo_experiments(
    *,
    depth: int = DEMO_DEPTH,
    width: int = DEMO_WIDTH,
    epochs: int = DEMO_EPOCHS,
    lr: float = DEMO_LR,
    seed: int = DEMO_SEED,
    limit_train: int | None = None,
) -> dict[str, Experiment]:
    """The demo's two Experiments, same in all but activation and init."""
    base = Experiment(
        seed=seed,
        dataset="digits",
        depth=depth,
        width=width,
        epochs=epochs,
        lr=lr,
        limit_train=limit_train,
        loss="cross_entropy",
        optimizer="sgd",
        batch_size=10,
    )
    return {
        name: dataclasses.replace(base, name=f"demo-{name}", activation=act, init=init)
        for name, (act, init, _) in NETS.items()
    }


def _per_layer(ratio: float, n_layers: int) -> float:
    return ratio ** (1.0 / (n_layers - 1)) if ratio > 0 and n_layers > 1 else math.nan


def _count(x: float) -> str:
    """A factor as people say it: 3 significant digits, thousands grouped: 2,520 / 5.38."""
    return f"{float(f'{x:.3g}'):,.0f}" if x >= 100 else f"{x:.3g}"


def _fraction(ratio: float) -> str:
    if not math.isfinite(ratio) or ratio <= 0:
        return "not measured"
    return f"1/{_count(1 / ratio)}" if ratio < 1 else f"{_count(ratio)}x"


def reading(layers: list[str], speed: dict[str, np.ndarray]) -> str:
    """One sentence on the learning speeds: first vs last layer, and per layer.

    Args:
        layers: layer names, input side first.
        speed: "sigmoid" and "relu" -> array of shape (n_layers,) of mean delta_norm.
    """
    first, last, n = layers[0], layers[-1], len(layers)
    ratio = {k: float(v[0] / v[-1]) for k, v in speed.items()}
    per = {k: _per_layer(r, n) for k, r in ratio.items()}
    gap = ratio["relu"] / ratio["sigmoid"]
    verdict = (
        f"so the sigmoid net's first layer learns {_count(gap)}x slower, relative to its "
        "output layer, than the ReLU net's: the vanishing gradient"
        if gap > 1
        else "so here the sigmoid net's first layers are not held back"
    )
    return (
        f"In the sigmoid net the gradient reaching {first} is {_fraction(ratio['sigmoid'])} "
        f"of that at {last} (x{per['sigmoid']:.2f} per layer); with ReLU + He init it is "
        f"{_fraction(ratio['relu'])} (x{per['relu']:.2f} per layer), {verdict}."
    )


def _fmt(x: float) -> str:
    """3 significant digits, scientific below 1e-3 (where fixed notation hides them)."""
    if not math.isfinite(x):
        return "-" if math.isnan(x) else str(x)
    return f"{x:.2e}" if 0 < abs(x) < 1e-3 else f"{x:.3g}"


def speed_table(layers: list[str], speed: dict[str, np.ndarray]):
    """A rich Table: per layer, each net's mean delta_norm and its ratio to the last layer."""
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, title="delta_norm, mean over epoch 1")
    table.add_column("layer")
    for name in speed:
        table.add_column(f"{name}\ndelta_norm", justify="right")
        table.add_column(f"{name}\n/ {layers[-1]}", justify="right")
    for i, layer in enumerate(layers):
        cells = []
        for values in speed.values():
            cells += [_fmt(float(values[i])), _fmt(float(values[i] / values[-1]))]
        table.add_row(layer, *cells)
    return table


def _accuracy_line(experiments: dict[str, Experiment], results: dict[str, TrainResult]) -> str:
    parts = []
    for name, result in results.items():
        acc = result.final("test_accuracy")
        shown = "-" if acc is None else f"{acc:.3f}"
        parts.append(f"{NETS[name][2]} {shown}")
    epochs = next(iter(experiments.values())).epochs
    return f"test accuracy after {epochs} epochs: " + ", ".join(parts)


def run_demo(
    out: str | Path = Path("runs"),
    *,
    depth: int = DEMO_DEPTH,
    width: int = DEMO_WIDTH,
    epochs: int = DEMO_EPOCHS,
    lr: float = DEMO_LR,
    seed: int = DEMO_SEED,
    limit_train: int | None = None,
    progress: bool = False,
    console=None,
) -> DemoResult:
    """Train the sigmoid and the ReLU net, print the learning-speed table and its reading.

    Writes out/demo-sigmoid and out/demo-relu, replacing earlier demo runs there.

    Args:
        out: parent directory of the two run directories.
        depth, width, epochs, lr, seed, limit_train: as in `Experiment`; the defaults
            are the documented demo.
        progress: show the trainer's progress bars.
        console: a rich Console to print to; None: a new one on stdout.

    Returns:
        a DemoResult.
    """
    from rich.console import Console

    console = console or Console(highlight=False)
    experiments = demo_experiments(
        depth=depth, width=width, epochs=epochs, lr=lr, seed=seed, limit_train=limit_train
    )
    threads = torch.get_num_threads()
    # Batches of 10 through 32 units: a second thread only adds synchronisation, and on a
    # busy machine its spin-waits made the demo 7x slower (44 s instead of 6 s, 2 cores).
    torch.set_num_threads(1)
    try:
        results = {
            name: train(exp, Path(out) / exp.name, progress=progress, overwrite=True)
            for name, exp in experiments.items()
        }
    finally:
        torch.set_num_threads(threads)
    layers = results["sigmoid"].record.layers
    speed = {name: first_epoch_speed(r.record) for name, r in results.items()}
    sentence = reading(layers, speed)
    meta = results["sigmoid"].record.meta
    console.print(
        f"digits ({meta.get('n_train')} train), {len(layers)} Linear layers "
        f"({depth} hidden of {width}), batch 10, lr {lr}, seed {seed}",
        markup=False,
    )
    console.print(speed_table(layers, speed))
    console.print(sentence, markup=False)
    console.print(_accuracy_line(experiments, results), markup=False)
    runs = ", ".join(str(r.run_dir) for r in results.values())
    console.print(f"runs: {runs}", markup=False)
    return DemoResult(results=results, layers=layers, speed=speed, sentence=sentence)
