"""What would the default cost if DESIGN's per-step set were smaller? (issue 8)

Patches, never changes, the probe in a child process and measures the default probe's
interleaved overhead ratio (benchmarks/overhead.py's method) on one model, alternating
the variants in separate processes:

- `default`: the probe as it is;
- `no count`: the exact per-step non-finite count of the gradients replaced by zeros (the
  sums of squares still flag a NaN/Inf step: a non-finite element makes its sum non-finite);
- `no count, no act`: also no activation statistics on steps that are not detail steps.

    python benchmarks/overhead_whatif.py [--model MLP] [--repeats 2] [--rounds 15]

Both patched variants drop quantities DESIGN.md requires at every recorded step; they
measure what those quantities cost, not a proposal the probe implements.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
VARIANTS = ("default", "no count", "no count, no act")


def _patch(variant: str) -> None:
    import torch

    from gradprobe.probe import capture, step_stats
    from gradprobe.stats import tensor_stats as ts

    if variant == "default":
        return

    def sumsq_zero_count(tensors, groups, ws=None):
        squares = [ts.row_sumsq(ts.stacked_rows(tensors, idx)).double() for idx in groups]
        sq = squares[0] if len(groups) == 1 else torch.cat(squares)
        return torch.stack([sq, torch.zeros_like(sq)])

    step_stats.sumsq_nonfinite = sumsq_zero_count
    if variant == "no count, no act":
        original = capture.ForwardCapture.collect

        def collect(self, state, detail):
            if detail:
                return original(self, state, detail)
            self.discard()

        capture.ForwardCapture.collect = collect


def child(variant: str, model: str, rounds: int) -> None:
    """Measure one variant in this process and print its ratio and bare step."""
    sys.path[:0] = [str(HERE), str(HERE.parent)]
    from bench_models import MODELS
    from overhead import _gradprobe, interleaved

    _patch(variant)
    name = next(n for n in MODELS if n.startswith(model))
    ratios, bare, _ = interleaved(MODELS[name], {"default": _gradprobe()}, rounds, 0.08)
    print(f"{ratios['default']:.4f} {bare * 1e3:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="MLP 784", help="start of a MODELS name")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.model, args.rounds)
        return
    results: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for _ in range(args.repeats):
        for variant in VARIANTS:
            out = subprocess.run(
                [sys.executable, __file__, "--child", variant, "--model", args.model,
                 "--rounds", str(args.rounds)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            ratio, bare = map(float, out.stdout.split()[-2:])
            results[variant].append(ratio)
            print(f"{variant}: {ratio:.3f}x (bare {bare:.2f} ms)", flush=True)
    print(f"\n| variant ({args.model}...) | ratios | median |\n|---|---|---|")
    for variant, rs in results.items():
        cells = " / ".join(f"{r:.3f}" for r in rs)
        print(f"| {variant} | {cells} | {statistics.median(rs):.3f}x |")


if __name__ == "__main__":
    main()
