"""Ways to count the NaN/Inf elements of a gradient-sized tensor without a host read.

The probe counts non-finite elements at every recorded step (so the step where a NaN
appears has exact counts without reading a flag on the host); this compares the
candidate kernels with one BLAS dot product (the sum of squares taken anyway), on a
784 x 1000 float32 tensor (the first weight of the 784-1000-750-500-10 MLP), warm.

    python benchmarks/count_kernels.py
"""

from __future__ import annotations

import time

import torch

N = 784 * 1000


def _ms(fn, repeats: int = 50) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1e3


def main() -> None:
    g = torch.randn(N, generator=torch.Generator().manual_seed(0))
    g[5], g[7] = float("nan"), float("inf")
    ws = torch.empty_like(g)
    one = torch.ones(())
    kernels = {
        "dot(g, g) (the sum of squares, for scale)": lambda: torch.dot(g, g),
        "N - nansum(1 + 0 * g) (gradprobe.stats.row_finite)": lambda: (
            N - torch.nansum(torch.add(one, g, alpha=0, out=ws))
        ),
        "(0 * g).nan_to_num_(nan=1).sum() (row_nonfinite)": lambda: (
            torch.mul(g, 0, out=ws).nan_to_num_(nan=1.0).sum()
        ),
        "count_nonzero(0 * g)": lambda: torch.count_nonzero(torch.mul(g, 0, out=ws)),
        "(~isfinite(g)).sum()": lambda: (~torch.isfinite(g)).sum(),
        "isnan(g).sum() + isinf(g).sum()": lambda: torch.isnan(g).sum() + torch.isinf(g).sum(),
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {N} float32 elements")
    base = _ms(kernels["dot(g, g) (the sum of squares, for scale)"])
    for name, fn in kernels.items():
        ms = _ms(fn)
        print(f"  {name:<52} {ms:7.3f} ms  {ms / base:5.1f} dots  -> {float(fn()):.0f}")


if __name__ == "__main__":
    main()
