"""`nielsen-depth`: Nielsen's validation accuracy of 1 to 4 hidden layers (NNDL ch. 5).

The chapter trains [784, 30, 10], [784, 30, 30, 10], [784, 30, 30, 30, 10] and
[784, 30, 30, 30, 30, 10] for 30 epochs and finds that depth beyond the second hidden
layer does not help (96.48, 96.90, 96.57, 96.53%), the puzzle that leads to the vanishing
gradient. We train each network from several seeds at once (gradprobe.lab.ensemble),
compare the seed mean and spread with each published single run, and test the claim.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from gradprobe.lab.reproduce.nielsen_depth_parts import (
    BATCH_SIZE,
    DATA_SEED_OFFSET,
    ETA,
    LAMBDA,
    NETWORKS,
    RECORDS_PER_EPOCH,
    DepthData,
    DepthRun,
    load_depth_data,
    train_depth,
)
from gradprobe.lab.reproduce.published import Published, published
from gradprobe.lab.reproduce.result import Check, Reproduction, Row, Section

NAME = "nielsen-depth"
# Measured on this project's 2-core machine (OMP_NUM_THREADS=1): one epoch of 50,000
# images at mini-batch 10 costs 4-6.5 s of CPU per network for 4 to 12 seeds batched
# together (per-step Python overhead dominates, so seeds come almost free). The full run
# (4 networks x 30 epochs x 10 seeds) took 600 s of CPU; the default, 5 epochs, 74 s.
DEFAULT_SEEDS = 4
FULL_SEEDS = 10
DEFAULT_EPOCHS = 5
FULL_EPOCHS = 30  # NNDL ch. 5: "after 30 epochs"


def binomial_sd(p: float, n: int) -> float:
    """Standard deviation, in points, of an accuracy p (fraction) measured on n images."""
    return 100.0 * math.sqrt(p * (1.0 - p) / n)


def _hidden(run: DepthRun) -> int:
    return len(run.sizes) - 2


def _row(pub: Published, run: DepthRun, epochs: int) -> Row:
    why = (
        "Nielsen's numbers are single unseeded runs; ours agree when his lies within 2 seed "
        "sd of our mean"
    )
    if epochs != FULL_EPOCHS:
        why = f"ours after {epochs} of {FULL_EPOCHS} epochs (default run; --full for the setup)"
    return Row.compare(pub.figure(f"{run.name}/accuracy"), run.final_accuracy, why=why)


def _depth(row: Row) -> str:
    """The number of hidden layers of a row's network, from its key "784-30-...-10/..."."""
    return str(row.key.split("/")[0].count("-") - 1)


def _sd(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def no_gain_check(pub: Published, runs: Sequence[DepthRun], n_val: int) -> Check:
    """The claim: 3 and 4 hidden layers are not better than 2.

    Holds iff, for d = 3 and 4 hidden layers, mean(d) - mean(2) is at most one run's
    spread: the root mean square of the two networks' seed sds, and at least the binomial
    sd of an accuracy on the n_val validation images (a gain smaller than that cannot be
    told from the choice of validation images).
    """
    acc = {_hidden(r): r.final_accuracy for r in runs}
    missing = {2, 3, 4} - set(acc)
    if missing:
        raise ValueError(f"the check needs networks of 2, 3 and 4 hidden layers; missing {missing}")
    means = {d: float(np.mean(a)) for d, a in acc.items()}
    binomial = binomial_sd(means[2] / 100.0, n_val)
    parts, holds = [], True
    for d in (3, 4):
        gain = means[d] - means[2]
        allowed = max(math.sqrt((_sd(acc[2]) ** 2 + _sd(acc[d]) ** 2) / 2), binomial)
        holds = holds and gain <= allowed
        parts.append(f"{d} hidden {gain:+.2f} (allowed {allowed:.2f})")
    shown = ", ".join(f"{d} hidden {means[d]:.2f}%" for d in sorted(means))
    evidence = (
        f"mean validation accuracy {shown}; gain over 2 hidden: {', '.join(parts)} points; "
        f"allowed: one run's spread, the rms seed sd of the two networks ({len(runs[0].seeds)} "
        f"seeds), at least the binomial sd on {n_val} images, {binomial:.2f}"
    )
    return Check("no-gain-from-depth", pub.claim("no-gain-from-depth"), holds, evidence)


def _notes(runs: Sequence[DepthRun], rows: Sequence[Row], epochs: int, n_val: int) -> list[str]:
    p = float(np.mean([r.final_accuracy.mean() for r in runs])) / 100.0
    notes = []
    if epochs != FULL_EPOCHS:
        notes.append(
            f"This default run stops after {epochs} of Nielsen's {FULL_EPOCHS} epochs to finish "
            f"in minutes: its accuracies are NOT the published setup; its rows "
            f"set them beside his only as a check that training works, not as a verdict on "
            f"the reproduction. `--full` runs all {FULL_EPOCHS} epochs."
        )
    agree = [r.key.split("/")[0] for r in rows if r.agrees]
    differ = [f"{r.key.split('/')[0]} ({r.mean - r.published:+.2f} points)" for r in rows
              if not r.agrees]  # fmt: skip
    notes.append(
        f"Agrees for: {', '.join(agree) or 'none'}; differs for: {', '.join(differ) or 'none'}."
        " Nielsen's figures are one unseeded run each (the book: 'it'll vary a bit from run "
        "to run'), so the test is whether his run lies within 2 seed sd of our mean."
    )
    ours = sorted(rows, key=lambda r: -r.mean)
    theirs = sorted(rows, key=lambda r: -r.published)
    notes.append(
        f"Ranked by accuracy, hidden layers: ours {' > '.join(_depth(r) for r in ours)}, "
        f"Nielsen's {' > '.join(_depth(r) for r in theirs)}."
    )
    notes.append(
        f"An accuracy on {n_val} validation images has a binomial sd of "
        f"{binomial_sd(p, n_val):.2f} points at our mean {100 * p:.2f}%; our seed sd includes "
        "that noise and the spread from initialisation and data order."
    )
    notes.append(
        "Setup as network2.py except: float32 torch instead of float64 numpy, and "
        "torch.randperm shuffling instead of random.shuffle (same distribution)."
    )
    return notes


def _settings(runs: Sequence[DepthRun], data: DepthData, epochs: int) -> dict:
    return {
        "networks": [list(r.sizes) for r in runs],
        "epochs": epochs,
        "n_train": len(data.x_train),
        "n_val": len(data.x_val),
        "batch_size": BATCH_SIZE,
        "eta": ETA,
        "lambda": LAMBDA,
        "l2": f"w <- (1 - eta lambda / n) w - eta grad, n = {len(data.x_train)}",
        "activation": "sigmoid (hidden and output)",
        "cost": "Nielsen's cross-entropy on sigmoid outputs",
        "init": "weights N(0, 1/n_in), biases N(0, 1)",
        "data_order_seed": f"seed + {DATA_SEED_OFFSET}, torch.randperm each epoch",
        "probe_records_per_epoch": RECORDS_PER_EPOCH,
        "seconds_per_epoch": {r.name: round(r.seconds_per_epoch, 2) for r in runs},
    }


def _per_epoch_table(runs: Sequence[DepthRun]) -> tuple[dict, ...]:
    """One row per epoch: each network's validation accuracy, mean over seeds, in %."""
    epochs = runs[0].val_accuracy.shape[1]
    return tuple(
        {
            "epoch": e + 1,
            **{r.name: round(100 * float(r.val_accuracy[:, e].mean()), 2) for r in runs},
        }  # fmt: skip
        for e in range(epochs)
    )


def _sections(runs: Sequence[DepthRun]) -> list[Section]:
    first = tuple(r.run_dirs[0] for r in runs if r.run_dirs)
    return [
        Section(
            "Validation accuracy per epoch",
            "Nielsen's monitor_evaluation_accuracy: the curves of the first seed of each "
            "network (1 to 4 hidden layers); the table gives the mean over all seeds, in %.",
            runs=first,
            figures=("training_curves",),
            table=_per_epoch_table(runs),
        ),
        Section(
            "Learning speed per layer during training",
            "||delta^l|| = ||dC/dz^l|| per layer over the steps, Nielsen's speed of learning, "
            "for the first seed of each network (one mini-batch of 10 images, recorded 10 "
            "times an epoch); Nielsen finds the layers nearest the input learning slowest.",
            runs=first,
            figures=("speed_lines",),
        ),
    ]


def reproduce_depth(
    seeds: Sequence[int],
    data: DepthData,
    *,
    epochs: int,
    full: bool,
    out: str | Path | None,
    log: Callable[[str], None] | None = None,
) -> Reproduction:
    """Train the four networks from `seeds` for `epochs` and compare with Nielsen.

    Args:
        seeds: one member per seed for every network.
        data: the split (`load_depth_data`); Nielsen's is 50,000 / 10,000 images.
        epochs: passes over the training images (Nielsen: 30).
        full: whether this is the published setup in full (recorded in the result).
        out: runs go to OUT/<network>/seed<s>; None keeps nothing on disk.
        log: called with one line of progress per network and epoch.
    """
    pub = published(NAME)
    runs = [
        train_depth(sizes, seeds, data, epochs=epochs,
                    out=None if out is None else Path(out) / "-".join(map(str, sizes)), log=log)
        for sizes in NETWORKS
    ]  # fmt: skip
    rows = [_row(pub, r, epochs) for r in runs]
    return Reproduction(
        name=NAME, title=pub.title, source=pub.source, url=pub.url, seeds=tuple(seeds),
        full=full, settings=_settings(runs, data, epochs), rows=rows,
        checks=[no_gain_check(pub, runs, len(data.x_val))],
        notes=_notes(runs, rows, epochs, len(data.x_val)), sections=_sections(runs),
    )  # fmt: skip


def run(
    seeds: tuple[int, ...], *, full: bool, out: Path, log: Callable[[str], None]
) -> Reproduction:
    """The registry's entry: 30 epochs when `full`, else DEFAULT_EPOCHS; all of MNIST."""
    epochs = FULL_EPOCHS if full else DEFAULT_EPOCHS
    log(f"{NAME}: 4 networks x {len(seeds)} seeds x {epochs} epochs on 50,000 MNIST images")
    return reproduce_depth(seeds, load_depth_data(), epochs=epochs, full=full, out=out, log=log)
