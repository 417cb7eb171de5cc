"""`nielsen-speed`: the speed of learning of each hidden layer (Nielsen, NNDL ch. 5).

Nielsen measures how fast each hidden layer of a sigmoid network learns by ||dC/db^l||,
the bias gradient averaged over the first 1,000 MNIST training images, and finds each layer
learning several times slower than the next: the vanishing gradient. Then he trains each network
by full-batch gradient descent for 500 epochs and plots the speeds per epoch. We draw the
initial gradient from many seeds (it costs a forward and backward pass each), set its seed
mean and spread beside his single runs, record one training run per network with
gradprobe.watch, and test his two claims. The pieces are in nielsen_speed_parts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from gradprobe.lab.reproduce.nielsen_speed_parts import (
    EPOCHS,
    ETA,
    LMBDA,
    N_IMAGES,
    NETWORKS,
    NetworkRun,
    layer_ratios,
    load_images,
    measure_network,
    name_of,
    network_key,
    ordered,
)
from gradprobe.lab.reproduce.published import Published, published
from gradprobe.lab.reproduce.result import Check, Reproduction, Row, Section

NAME = "nielsen-speed"
# Measured on this project's 2-core machine (OMP_NUM_THREADS=1, shared with other jobs):
# the gradient at initialisation costs ~0.01-0.02 s per network and seed, so seeds are
# cheap; one 500-epoch training run (full batch of 1,000 images, float64, recorded by the
# probe) costs 4-11 s per network, depending on the machine's load.
DEFAULT_SEEDS = 20  # ~1 s of initial gradients
FULL_SEEDS = 100  # ~3-6 s
DEFAULT_CURVE_SEEDS = 1  # the chapter's plots: one run per network; 15-40 s for the three
FULL_CURVE_SEEDS = 10  # 2-6 min: is the order of the curves a property of every run?
WHY = (
    "Nielsen's figure is one unseeded run; ours agrees when it lies within 2 sd of our seed "
    "mean (the notes give the seed-to-seed spread)"
)

Log = Callable[[str], None]


def _rows(pub: Published, sizes: tuple[int, ...], speeds: np.ndarray) -> list[Row]:
    key = network_key(sizes)
    return [
        Row.compare(pub.figure(f"{key}/hidden{layer + 1}"), speeds[:, layer], why=WHY)
        for layer in range(speeds.shape[1])
        if f"{key}/hidden{layer + 1}" in pub.figures
    ]


def earlier_slower(pub: Published, initial: dict[tuple, np.ndarray]) -> Check:
    """The claim at initialisation, tested in EVERY seed: holds iff each seed's
    ||dC/db^l|| < ||dC/db^{l+1}|| for every hidden layer l of every network."""
    holds, parts, worst = True, [], 0.0
    for sizes, speeds in initial.items():
        n_ordered = int(ordered(speeds).sum())
        holds = holds and n_ordered == len(speeds)
        mean_ratio = layer_ratios(speeds.mean(0))
        worst = max(worst, float(layer_ratios(speeds).max()))
        parts.append(
            f"{name_of(sizes)} ordered in {n_ordered} of {len(speeds)} seeds, seed-mean ratios "
            f"{', '.join(f'{r:.2f}' for r in mean_ratio)}"
        )
    evidence = (
        "tested in every seed (not only the seed means); ratio = layer l / layer l+1: "
        + "; ".join(parts)
        + f"; largest ratio of any seed {worst:.2f}"
    )
    return Check("earlier-slower", pub.claim("earlier-slower"), holds, evidence)


def _network_text(sizes: tuple, runs: dict[int, np.ndarray]) -> tuple[int, str]:
    """How many of one network's runs keep the order at every epoch, and in words the
    largest ratio of any run and the epochs of any run out of order."""
    ok = {seed: ordered(v) for seed, v in runs.items()}  # seed -> (epochs,)
    ratios = {seed: layer_ratios(v) for seed, v in runs.items()}  # (epochs, n_hidden - 1)
    worst = max(ratios, key=lambda seed: float(ratios[seed].max()))
    epoch, pair = np.unravel_index(int(np.argmax(ratios[worst])), ratios[worst].shape)
    n_ok = sum(bool(v.all()) for v in ok.values())
    text = (
        f"{name_of(sizes)}: {n_ok} of {len(runs)} runs ordered at every epoch, largest ratio "
        f"hidden{pair + 1}/hidden{pair + 2} = {ratios[worst][epoch, pair]:.2f} (seed {worst}, "
        f"epoch {epoch})"
    )
    for seed, v in ok.items():
        if not v.all():
            bad = np.flatnonzero(~v)
            text += (
                f", seed {seed} out of order at {len(bad)} of {len(v)} epochs ({bad[0]}..{bad[-1]})"
            )
    return n_ok, text


def curves_keep_order(pub: Published, curves: dict[tuple, dict[int, np.ndarray]]) -> Check:
    """The claim during training, tested in every recorded run: holds iff each run keeps
    each hidden layer slower than the next at every epoch."""
    results = [_network_text(sizes, runs) for sizes, runs in curves.items()]
    n_runs = sum(len(runs) for runs in curves.values())
    n_ok = sum(n for n, _ in results)
    evidence = (
        f"tested in every run; {n_ok} of {n_runs} runs keep the order at every epoch; "
        "ratio = layer l / layer l+1: " + "; ".join(text for _, text in results)
    )
    return Check("curves-keep-order", pub.claim("curves-keep-order"), n_ok == n_runs, evidence)


def _notes(initial: dict, n_images: int, epochs: int, n_curve: int) -> list[str]:
    rel_sd = [
        float(v) for s in initial.values() if len(s) > 1 for v in s.std(0, ddof=1) / s.mean(0)
    ]
    ratio = np.concatenate([layer_ratios(s.mean(0)) for s in initial.values()])
    notes = [
        "Setup as Nielsen's fig/generate_gradient.py with network2.py: sigmoid units (output "
        "too), weights N(0, 1/n_in), biases N(0, 1), cross-entropy C = -sum_j [y ln a + (1 - y)"
        " ln(1 - a)] averaged over the images (output delta a - y, here computed from the "
        "logits, the same C), float64 like numpy; only the weights' random draws differ "
        "(torch's generator, float32 draws widened to float64).",
        f"Each hidden layer learns about {ratio.mean():.2f} x as fast as the next one (seed-mean"
        f" ratios {ratio.min():.2f}..{ratio.max():.2f}): the backward pass multiplies the "
        "error by W^T and sigma'(z) <= 1/4 once per layer.",
        "The probe's delta_norm is ||dC/dz^l|| summed over the batch of a cost averaged over "
        "the batch, which is Nielsen's averaged dC/db^l; with one full-batch step per epoch "
        "each recorded step is one epoch of his curves.",
    ]
    if rel_sd:
        notes.append(
            f"Our speed of a layer varies from seed to seed by {np.median(rel_sd):.0%} of its "
            f"mean (sd/mean, median over the {len(rel_sd)} layers; {min(rel_sd):.0%}.."
            f"{max(rel_sd):.0%}): a single run like each of Nielsen's agrees with ours anywhere "
            f"within about +-{2 * np.median(rel_sd):.0%} of our mean (2 sd)."
        )
    if (n_images, epochs) != (N_IMAGES, EPOCHS):
        notes.append(
            f"SHORTENED: {n_images} images and {epochs} epochs instead of Nielsen's "
            f"{N_IMAGES} and {EPOCHS}; the figures are not his setup."
        )
    else:
        notes.append(
            f"Both the default and --full run Nielsen's setup in full ({N_IMAGES} images, "
            f"{EPOCHS} epochs); they differ only in seeds: the figures from {DEFAULT_SEEDS} "
            f"or {FULL_SEEDS} seeds, the curves from {DEFAULT_CURVE_SEEDS} or "
            f"{FULL_CURVE_SEEDS} training runs per network (this run: {n_curve})."
        )
    return notes


def _sections(init_runs: list[Path], curve_runs: list[Path], seed: int) -> list[Section]:
    return [
        Section(
            "Speed of learning at initialisation (the chapter's bar chart)",
            f"||dC/db^l|| per layer before any training, seed {seed}: one recorded step (the "
            "gradient only) per network, 2, 3 and 4 hidden layers; the last bar is the output "
            "layer, which Nielsen leaves out.",
            runs=tuple(init_runs),
            figures=("speed_bars",),
        ),
        Section(
            "Speed of learning during training (the chapter's plots)",
            f"||dC/db^l|| per epoch of full-batch gradient descent (eta {ETA}, lambda {LMBDA}) "
            f"on the same images, seed {seed}, log scale, as Nielsen's 'Speed of learning: 2, 3"
            ", 4 hidden layers'; fcL is the output layer.",
            runs=tuple(curve_runs),
            figures=("speed_lines",),
        ),
    ]


def curve_note(runs: Sequence[NetworkRun], first: int) -> str:
    """Whether the order of the curves held in Nielsen's kind of run (one seed per network,
    our `first`) and in every run, in words."""
    broken = [
        f"{name_of(r.sizes)} seed {seed}" for r in runs for seed, v in r.curves.items()
        if not ordered(v).all()
    ]  # fmt: skip
    first_ok = all(ordered(r.curves[first]).all() for r in runs)
    n_runs = sum(len(r.curves) for r in runs)
    text = (
        f"Nielsen's plots are one unseeded run per network; ours with seed {first} "
        f"{'keeps' if first_ok else 'does not keep'} the order at every epoch in every network"
    )
    if not broken:
        return text + f", as do all {n_runs} runs (--full trains more seeds per network)."
    return (
        text + f"; {len(broken)} of {n_runs} runs do not ({', '.join(broken)}): the order "
        "during training, unlike the order at initialisation, is not a property of every run."
    )


def _curve_count(curve_seeds, full: bool, n_seeds: int) -> int:
    if curve_seeds is None:
        return min(FULL_CURVE_SEEDS if full else DEFAULT_CURVE_SEEDS, n_seeds)
    ok = isinstance(curve_seeds, int) and not isinstance(curve_seeds, bool)
    if not ok or not 1 <= curve_seeds <= n_seeds:
        raise ValueError(f"curve_seeds={curve_seeds!r} must be an int in 1..{n_seeds}")
    return curve_seeds


def speed_reproduction(
    seeds: Sequence[int],
    *,
    out: str | Path,
    full: bool = False,
    log: Log | None = None,
    n_images: int = N_IMAGES,
    epochs: int = EPOCHS,
    curve_seeds: int | None = None,
    networks: Sequence[Sequence[int]] = NETWORKS,
    path: str | Path | None = None,
) -> Reproduction:
    """Nielsen's speeds at initialisation over `seeds` and his training curves, compared.

    Args:
        seeds: initialisation seeds for the figures; the curves use the first `curve_seeds`.
        out: directory for the runs: out/init/KEY-seedS (one step) and out/curves/KEY-seedS.
        full: whether this is the --full run (more curve seeds by default).
        log: called with one line of progress at a time.
        n_images, epochs: Nielsen's 1,000 and 500; smaller for quick tests.
        curve_seeds: training runs per network; None: 1 (default) or 5 (full), at most
            len(seeds).
        networks: the networks, by default Nielsen's three.
        path: where MNIST lies (None: $GRADPROBE_MNIST, then the default directory).

    Raises:
        ValueError: no seeds, a bad curve_seeds, n_images or epochs, or a network that is
            not [n_in, hidden..., 10].
        FileNotFoundError: MNIST is not on disk.
    """
    say = log or (lambda _line: None)
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("seeds=() is empty; give at least one seed")
    n_curve = _curve_count(curve_seeds, full, len(seeds))
    pub, out = published(NAME), Path(out)
    data = load_images(n_images, path)
    runs = [measure_network(s, seeds, n_curve, data, out, epochs, say) for s in networks]
    initial = {r.sizes: r.initial for r in runs}
    return Reproduction(
        name=NAME,
        title=pub.title,
        source=pub.source,
        url=pub.url,
        seeds=seeds,
        full=full,
        settings={
            "networks": [list(r.sizes) for r in runs],
            "n_images": n_images,
            "epochs": epochs,
            "eta": ETA,
            "lambda": LMBDA,
            "batch_size": n_images,
            "curve_seeds": list(seeds[:n_curve]),
            "dtype": "float64",
        },
        rows=[row for r in runs for row in _rows(pub, r.sizes, r.initial)],
        checks=[
            earlier_slower(pub, initial),
            curves_keep_order(pub, {r.sizes: r.curves for r in runs}),
        ],
        notes=[*_notes(initial, n_images, epochs, n_curve), curve_note(runs, seeds[0])],
        sections=_sections(
            [r.init_run for r in runs], [r.curve_runs[seeds[0]] for r in runs], seeds[0]
        ),
    )


def run(seeds: tuple[int, ...], *, full: bool, out: Path, log: Log) -> Reproduction:
    """The registry's entry point: Nielsen's setup in full, with fewer seeds unless `full`."""
    return speed_reproduction(seeds, out=out, full=full, log=log)
