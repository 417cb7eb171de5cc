"""The `nan` reproduction's sweep: the broken network at several learning rates and batch
sizes, with torch's nn.Sigmoid and with a hand-written logistic, and the learning rate at
which the smallest activation reaches a given order of magnitude."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from gradprobe.lab.reproduce.nan_parts import (
    DEPTH,
    NAN_LR,
    NIELSEN_BATCH,
    NIELSEN_LR,
    VARIANTS,
    WIDTH,
    NanRun,
    Split,
    train_variant,
)

__all__ = ["SWEEP_BATCHES", "SWEEP_LRS", "SWEEP_STEPS", "lr_at", "sweep"]

SWEEP_LRS = (NIELSEN_LR, 10.0, NAN_LR)  # Nielsen's eta, ~3x and 10x it
SWEEP_BATCHES = (NIELSEN_BATCH, 100)  # Nielsen's batch and ten times it
# The tail of the activations is set by the first update and flat after it (our runs:
# log10 min |a| moves < 0.1 decade from step 1 to step 300), so 10 steps measure it.
SWEEP_STEPS = 10


def _sweep_row(r: NanRun) -> dict:
    """One run of the sweep as a table row."""
    bad = r.record.first_nonfinite()
    where = "none" if bad is None else f"step {bad['step']}, {bad['layer']} ({bad['where']})"
    return {
        "logistic": "nn.Sigmoid" if r.variant.logistic == "torch" else "1/(1+exp(-z))",
        "eta": r.variant.lr,
        "batch": r.variant.batch_size,
        "log10 min |a|": round(r.log10_min_activation, 1),
        "first NaN/Inf": where,
        "last loss": round(float(r.finite_loss[-1]), 4),
    }


def sweep(split: Split, *, seed: int, lrs=SWEEP_LRS, batch_sizes=SWEEP_BATCHES,
          steps: int = SWEEP_STEPS, width: int = WIDTH, depth: int = DEPTH) -> tuple:  # fmt: skip
    """The broken network with nn.Sigmoid and with the hand-written logistic at every
    (lr, batch size), every step measured: one table row each (`_sweep_row`)."""
    grid = itertools.product(("torch", "hand"), lrs, batch_sizes)
    variants = [replace(VARIANTS["broken"], logistic=g, lr=lr, batch_size=b) for g, lr, b in grid]
    kw = {"seed": seed, "steps": steps, "width": width, "depth": depth, "detail_every": 1}
    return tuple(_sweep_row(train_variant(v, split, **kw)) for v in variants)


def lr_at(rows: Sequence[dict], log10_target: float, batch: int = NIELSEN_BATCH) -> float:
    """The eta at which nn.Sigmoid's smallest activation reaches 10^log10_target at
    `batch`, interpolated linearly in log10 between the sweep's rows; NaN outside them."""
    pts = sorted((r["eta"], r["log10 min |a|"]) for r in rows
                 if r["logistic"] == "nn.Sigmoid" and r["batch"] == batch
                 and r["first NaN/Inf"] == "none" and r["log10 min |a|"] > -math.inf)  # fmt: skip
    if len(pts) < 2 or not pts[-1][1] <= log10_target <= pts[0][1]:
        return math.nan
    etas, logs = zip(*pts)
    return float(np.interp(-log10_target, [-v for v in logs], etas))
