"""Where the probe's time goes inside a training loop: its hooks and step, timed in place.

Wraps the probe's hook and step functions with perf_counter and trains a bare and a
watched copy of each model alternately; prints the watched-minus-bare step time and
each part's time per step (nested parts are included in their callers' time).

    python benchmarks/overhead_breakdown.py                 # every model, default probe
    python benchmarks/overhead_breakdown.py --detail-every 1 --model LSTM
"""

from __future__ import annotations

import argparse
import collections
import copy
import time

import torch
from bench_models import MODELS
from overhead import Trainer

import gradprobe as gp
from gradprobe.probe import capture, probe, step_stats

PARTS = [
    (probe.Probe, "_on_layer_forward"),
    (probe.Probe, "_on_activation"),
    (probe.Probe, "_collect"),
    (probe.Probe, "_end_step"),
    (probe.Probe, "_on_pre_step"),
    (step_stats.StepStats, "measure"),
    (step_stats.StepStats, "grads"),
    (step_stats.StepStats, "deltas"),
    (step_stats.StepStats, "weights_and_update"),
    (step_stats.StepStats, "snapshot"),
    (capture.ForwardCapture, "_reduce"),
]


def _timed(totals, name, fn):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[name] += time.perf_counter() - start

    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detail-every", type=int, default=10)
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--model", default="", help="only models whose name contains this")
    args = parser.parse_args()
    totals: collections.Counter = collections.Counter()
    for cls, name in PARTS:
        setattr(cls, name, _timed(totals, f"{cls.__name__}.{name}", getattr(cls, name)))
    for model_name, bench in MODELS.items():
        if args.model not in model_name:
            continue
        torch.manual_seed(0)
        base = bench.build()
        bare, watched = (
            Trainer(base, bench.batches()),
            Trainer(copy.deepcopy(base), bench.batches()),
        )
        p = gp.watch(watched.model, watched.opt, every=args.every, detail_every=args.detail_every)
        bare.run(10), watched.run(10)
        totals.clear()
        blocks = max(1, args.steps // 20)
        t_bare = t_watched = 0.0
        for _ in range(blocks):  # alternate, as benchmarks/overhead.py does
            t_bare += bare.run(20) / blocks
            t_watched += watched.run(20) / blocks
        p.close()
        print(f"\n{model_name}, every={args.every}, detail_every={args.detail_every}")
        print(f"  bare {t_bare * 1e3:.2f} ms, watched {t_watched * 1e3:.2f} ms per step")
        for name, seconds in totals.most_common():
            print(f"  {name:<36} {seconds / (blocks * 20) * 1e3:7.3f} ms per step")


if __name__ == "__main__":
    main()
