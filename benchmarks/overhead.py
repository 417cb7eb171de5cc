"""Step time with the probe divided by the bare step, measured in one process, interleaved.

Two identical copies of a model train side by side on the same batches: one bare, one
watched by gradprobe. Blocks of steps alternate between them, so drift of the machine
(frequency, other load) hits both alike; the ratio is the median over blocks.

    python benchmarks/overhead.py            # the two models of issue 2, ~1 min on 2 cores
    python benchmarks/overhead.py --quick    # fewer repeats
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time

import torch
from torch import nn

import gradprobe as gp

VARIANTS = {
    "control: no probe": None,  # two bare copies: the noise floor of the method
    "no-op hooks only": "noop",  # the floor any hook-based monitor pays
    "default": {},
    "default, run_dir": {"run_dir": True},
    "detail_every=1": {"detail_every": 1},
    "detail_every=100": {"detail_every": 100},
    "no activations": {"activations": False},
    "every=10": {"every": 10},
}


def mlp(sizes: list[int], act=nn.ReLU) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), act()]
    return nn.Sequential(*layers[:-1])


MODELS = {
    "MLP 784-1000-750-500-10, batch 100": (lambda: mlp([784, 1000, 750, 500, 10]), 784, 10, 100),
    "MLP 64 layers of width 64, batch 32": (lambda: mlp([64] * 65), 64, 64, 32),
}


class Trainer:
    def __init__(self, model: nn.Module, batches) -> None:
        self.model = model
        self.opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        self.batches = batches
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
            self.opt.step()
        return (time.perf_counter() - start) / n


def _attach_noop_hooks(trainer: Trainer) -> None:
    """The hooks gradprobe registers (every module, the optimizer's step), doing nothing."""

    def noop(*args):
        return None

    for module in trainer.model.modules():
        module.register_forward_hook(noop)
    trainer.opt.register_step_pre_hook(noop)
    trainer.opt.register_step_post_hook(noop)


def twin_trainers(build, n_in: int, n_out: int, batch: int) -> tuple[Trainer, Trainer]:
    """Two trainers of identical copies of a model, on the same 8 seeded batches."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(batch, n_in, generator=g), torch.randint(0, n_out, (batch,), generator=g))
        for _ in range(8)
    ]
    base = build()
    return Trainer(base, batches), Trainer(copy.deepcopy(base), batches)


def measure(build, n_in, n_out, batch, options, repeats, block) -> tuple[float, float]:
    bare, watched = twin_trainers(build, n_in, n_out, batch)
    tmp = tempfile.TemporaryDirectory()
    probe = None
    if options == "noop":
        _attach_noop_hooks(watched)
    elif options is not None:
        opts = dict(options)
        if opts.pop("run_dir", False):
            opts["run_dir"] = tmp.name
        probe = gp.watch(watched.model, watched.opt, **opts)
    bare.run(block), watched.run(block)  # warm-up: allocator, caches, first flush
    ratios, bare_times = [], []
    for _ in range(repeats):
        t_bare = bare.run(block)
        t_probe = watched.run(block)
        ratios.append(t_probe / t_bare)
        bare_times.append(t_bare)
    if probe is not None:
        probe.close()
    tmp.cleanup()
    return statistics.median(ratios), statistics.median(bare_times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter repeats")
    args = parser.parse_args()
    repeats, block = (5, 20) if args.quick else (15, 50)
    torch.set_num_threads(torch.get_num_threads())
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{repeats} interleaved blocks of {block} steps; ratio = probe / bare step (median)"
    )
    for model_name, (build, n_in, n_out, batch) in MODELS.items():
        print(f"\n{model_name}")
        for variant, options in VARIANTS.items():
            ratio, bare = measure(build, n_in, n_out, batch, options, repeats, block)
            print(f"  {variant:<20} {ratio:6.3f}x   (bare step {bare * 1e3:6.2f} ms)")


if __name__ == "__main__":
    main()
