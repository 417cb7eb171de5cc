"""Step time with a gradient monitor divided by the bare step, in one process, interleaved.

Identical copies of a model train on the same batches: one bare, one per monitor
(gradprobe's default, every=10, with histograms every 100 steps, and the monitors people
use today, benchmarks/monitors.py). Each round runs, for every monitor, a block of steps of the
bare copy next to a block of the monitored one; the ratio of the two blocks' step times
is taken per round and the table gives the median over rounds. The control row is a
second bare copy: the method's noise floor. SGD with momentum, cross-entropy.

    python benchmarks/overhead.py            # 4 models and the depth sweep, ~4 min
    python benchmarks/overhead.py --quick    # fewer, shorter rounds, ~1 min
    python benchmarks/overhead.py --no-depth --only TensorBoard --only wandb   # some rows
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import statistics
import tempfile
import time
from collections.abc import Callable

import numpy as np
import torch
from bench_models import DEPTHS, MODELS, Bench, deep_mlp
from monitors import MONITORS, MissingPackage
from torch import nn

import gradprobe as gp


class Trainer:
    """A model, its SGD optimizer and batches; optional callback after each backward."""

    def __init__(self, model: nn.Module, batches, callback: Callable | None = None) -> None:
        self.model = model
        self.opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        self.batches = batches
        self.callback = callback
        self.i = 0

    def run(self, n: int) -> float:
        """Seconds per step over n steps."""
        start = time.perf_counter()
        for _ in range(n):
            x, y = self.batches[self.i % len(self.batches)]
            self.i += 1
            self.opt.zero_grad()
            loss = nn.functional.cross_entropy(self.model(x), y)
            loss.backward()
            if self.callback is not None:
                self.callback(self.i)
            self.opt.step()
        return (time.perf_counter() - start) / n


def _gradprobe(**options) -> Callable:
    def attach(trainer: Trainer, tmp: str) -> Callable[[], None]:
        return gp.watch(trainer.model, trainer.opt, **options).close

    return attach


def _monitor(attach_fn) -> Callable:
    def attach(trainer: Trainer, tmp: str) -> Callable[[], None]:
        trainer.callback, close = attach_fn(trainer.model, tmp)
        return close

    return attach


def _noop_hooks(trainer: Trainer, tmp: str) -> Callable[[], None]:
    """The hooks gradprobe registers by default (layers, activations), doing nothing."""
    probe = gp.watch(trainer.model, trainer.opt)
    modules = [m for m in trainer.model.modules() if m._forward_hooks and m is not trainer.model]
    probe.close()
    handles = [m.register_forward_hook(lambda *args: None) for m in modules]
    return lambda: [h.remove() for h in handles]


def _one_pass(trainer: Trainer, tmp: str) -> Callable[[], None]:
    """One sum of squares per gradient after each step, kept on the device (no host read)."""
    params = [p for p in trainer.model.parameters() if p.requires_grad]

    def read(optimizer, args, kwargs) -> None:
        torch._foreach_norm([p.grad for p in params if p.grad is not None])

    return trainer.opt.register_step_post_hook(read).remove


FLOORS = {
    "floor: no-op forward hooks where gradprobe hooks": _noop_hooks,
    "floor: one norm pass over the gradients per step": _one_pass,
}
# The default detail schedule, Every(10, until=1000, then=100), measures 1 recorded step in
# 10 in detail for the first 1000 and 1 in 100 after: the first row is the default as it
# runs here (a benchmark copy takes a few hundred steps), the second its density from step
# 1000 on, the same as detail_every=100 (both measure steps 0 mod 100), without training
# every copy 1000 steps first (~2 min for the Transformer alone).
GRADPROBE = {
    "gradprobe default, steps 0-999 (1 in 10 in detail)": _gradprobe(),
    "gradprobe default from step 1000 (1 in 100 in detail)": _gradprobe(detail_every=100),
    "gradprobe every=10": _gradprobe(every=10),
}
VARIANTS = {
    "control: a second bare copy": lambda trainer, tmp: lambda: None,
    **GRADPROBE,
    "gradprobe + histograms every 100 steps": _gradprobe(histograms=100),
    **FLOORS,
    **{name: _monitor(fn) for name, fn in MONITORS.items()},
}


def _trainers(bench: Bench, variants: dict, tmp: str) -> tuple[Trainer, dict, list]:
    """The bare trainer and one per variant that could attach; closers; skip messages."""
    torch.manual_seed(0)
    base = bench.build()
    batches = bench.batches()
    bare = Trainer(base, batches)
    watched, closers, skipped = {}, [], []
    for name, attach in variants.items():
        trainer = Trainer(copy.deepcopy(base), batches)
        try:
            closers.append(attach(trainer, tmp))
        except MissingPackage as exc:
            skipped.append(f"{name}: skipped ({exc})")
            continue
        watched[name] = trainer
    return bare, watched, closers + skipped


def interleaved(bench: Bench, variants: dict, rounds: int, block_secs: float) -> tuple:
    """{variant: median ratio to bare}, the median bare step (s), skip messages.

    Each round pairs a block of the bare copy with a block of each variant, adjacent, the
    bare block first in even rounds and second in odd ones (no copy always runs after
    the same one); a ratio is the variant's block over its paired bare block.
    """
    with tempfile.TemporaryDirectory() as tmp:
        bare, watched, extra = _trainers(bench, variants, tmp)
        for trainer in (bare, *watched.values()):
            trainer.run(3)  # warm-up: allocator, caches, the probe's first steps
        block = max(2, round(block_secs / bare.run(3)))
        ratios: dict[str, list[float]] = {name: [] for name in watched}
        bare_times = []
        for r in range(rounds):
            for name, trainer in watched.items():
                pair = (bare, trainer) if r % 2 == 0 else (trainer, bare)
                times = {id(t): t.run(block) for t in pair}
                ratios[name].append(times[id(trainer)] / times[id(bare)])
                bare_times.append(times[id(bare)])
        for close in extra:
            if callable(close):
                close()
    medians = {name: statistics.median(r) for name, r in ratios.items()}
    return medians, statistics.median(bare_times), [c for c in extra if isinstance(c, str)]


def compare_monitors(rounds: int, block_secs: float, only: list[str] | None = None) -> None:
    """One markdown table: a row per monitor, a column per model.

    `only`: keep the control row and the rows whose name contains one of these strings.
    """
    variants = {
        name: attach
        for name, attach in VARIANTS.items()
        if only is None or name.startswith("control") or any(o in name for o in only)
    }
    columns, skipped, bare_ms = {}, set(), []
    for model_name, bench in MODELS.items():
        ratios, bare, skips = interleaved(bench, variants, rounds, block_secs)
        columns[model_name] = ratios
        skipped.update(skips)
        bare_ms.append(f"{bare * 1e3:.2f} ms")
        print(f"  done: {model_name} (bare step {bare * 1e3:.2f} ms)", flush=True)
    print("\n| monitor | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for name in VARIANTS:
        if all(name in c for c in columns.values()):
            cells = [f"{c[name]:.3f}x" for c in columns.values()]
            print(f"| {name} | " + " | ".join(cells) + " |")
    print("| bare step (median) | " + " | ".join(bare_ms) + " |")
    for line in sorted(skipped):
        print(f"- {line}")


def histogram_cost(repeats: int = 15) -> None:
    """What one histogram step adds, timed alone: a block of ~0.08 s holds < 1 of them in
    100 steps, so the interleaved median above shows the steps between them only."""
    from gradprobe.stats.histogram import HistogramPlan

    print("\n| model | histogram of all gradients, ms | bare step, ms | amortised, every 100 |")
    print("|---|---|---|---|")
    for model_name, bench in MODELS.items():
        torch.manual_seed(0)
        trainer = Trainer(bench.build(), bench.batches())
        bare = statistics.median(trainer.run(3) for _ in range(repeats))
        grads = [p.grad for p in trainer.model.parameters() if p.grad is not None]
        plan = HistogramPlan(grads, list(range(len(grads))), len(grads))
        plan.counts(grads)  # tables and scratch made
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            plan.counts(grads)
            times.append(time.perf_counter() - start)
        cost = statistics.median(times)
        row = f"{cost * 1e3:.2f} | {bare * 1e3:.2f} | {1 + cost / (100 * bare):.4f}x"
        print(f"| {model_name} | {row} |", flush=True)


def tensorboard_cost(repeats: int = 5, n_steps: int = 10) -> None:
    """What `gp.watch(tensorboard=...)` adds per recorded step, timed alone: it writes at
    each flush (every 100 steps), so the interleaved median above would not show it.

    Each model trains n_steps under gp.watch (one in 10 a detail step, as by default);
    the events of those steps are then written and flushed to disk (the CRC of every
    record included), n_steps at a time as a flush would, median of `repeats`.
    """
    if importlib.util.find_spec("tensorboard") is None:
        print("\n- gradprobe tensorboard=: skipped (tensorboard is not installed)")
        return
    from gradprobe.viz.tensorboard import EventWriter

    print("\n| model | layers | scalars per step | events, ms per recorded step | bare step, ms |")
    print("|---|---|---|---|---|")
    for model_name, bench in MODELS.items():
        torch.manual_seed(0)
        trainer = Trainer(bench.build(), bench.batches())
        bare = statistics.median(trainer.run(3) for _ in range(repeats))
        with gp.watch(trainer.model, trainer.opt) as probe:
            trainer.run(n_steps)
        rec = probe.record()
        values = {q: rec[q] for q in rec.quantities}
        times = []
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(repeats):
                writer = EventWriter(tempfile.mkdtemp(dir=tmp))
                start = time.perf_counter()
                writer.write(rec.layers, rec.steps, values, rec.step_values, rec.series)
                writer.flush()
                times.append((time.perf_counter() - start) / n_steps)
                writer.close()
        n_scalars = sum(int((~np.isnan(v)).sum()) for v in values.values()) / n_steps
        cells = (len(rec.layers), f"{n_scalars:.0f}", f"{statistics.median(times) * 1e3:.2f}")
        cells += (f"{bare * 1e3:.2f}",)
        print(f"| {model_name} | " + " | ".join(str(c) for c in cells) + " |", flush=True)


def depth_sweep(rounds: int, block_secs: float) -> None:
    """Overhead against depth: the extra milliseconds must grow no faster than the step."""
    print(
        "\nMLP of width 32, batch 32, by depth: gradprobe default (steps 0-999; from step "
        "1000), every=10, no-op hooks\n"
    )
    head = ("layers", "bare step ms", "default", "extra ms", "extra us/layer", "from 1000")
    head += ("every=10",)
    print("| " + " | ".join(head + ("no-op hooks",)) + " |")
    print("|---" * (len(head) + 1) + "|")
    variants = {**GRADPROBE, "noop": _noop_hooks}
    for depth in DEPTHS:
        ratios, bare, _ = interleaved(deep_mlp(depth), variants, rounds, block_secs)
        default, later, sparse, noop = ratios.values()
        extra = (default - 1) * bare
        row = (depth, f"{bare * 1e3:.2f}", f"{default:.3f}x", f"{extra * 1e3:.3f}")
        row += (f"{extra / depth * 1e6:.2f}", f"{later:.3f}x", f"{sparse:.3f}x", f"{noop:.3f}x")
        print("| " + " | ".join(str(c) for c in row) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    parser.add_argument("--no-depth", action="store_true", help="skip the depth sweep")
    parser.add_argument("--no-models", action="store_true", help="only the depth sweep")
    parser.add_argument(
        "--only",
        action="append",
        help="only the monitor rows whose name contains this (repeatable), and the control",
    )
    args = parser.parse_args()
    rounds, block_secs = (9, 0.05) if args.quick else (25, 0.08)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {rounds} rounds of "
        f"~{block_secs:.2f} s blocks per copy; ratio = monitored / bare step (median)",
        flush=True,
    )
    if not args.no_models:
        compare_monitors(rounds, block_secs, args.only)
        histogram_cost()
        tensorboard_cost()
    if not args.no_depth:
        depth_sweep(rounds, block_secs)


if __name__ == "__main__":
    main()
