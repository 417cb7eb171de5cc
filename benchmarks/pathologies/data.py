"""Small, seeded data for the cases: sklearn's 8x8 digits (bundled, nothing downloads) and
synthetic sequences for the recurrent cases.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch


@dataclass(frozen=True)
class Batches:
    """A stream of seeded mini-batches drawn from a fixed tensor data set.

    Attributes:
        x: tensor of shape (n_samples, ...), the inputs.
        y: tensor of shape (n_samples,) or (n_samples, ...), the targets.
        batch_size: samples per batch.
        seed: base seed; batch i is drawn with seed + i, so a case is reproducible.
    """

    x: torch.Tensor
    y: torch.Tensor
    batch_size: int = 64
    seed: int = 0

    def batch(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The i-th batch (x_i, y_i), the same on every call."""
        g = torch.Generator().manual_seed(self.seed + i)
        idx = torch.randint(0, len(self.x), (self.batch_size,), generator=g)
        return self.x[idx], self.y[idx]

    def __repr__(self) -> str:
        return f"Batches(x={tuple(self.x.shape)}, batch_size={self.batch_size}, seed={self.seed})"


@lru_cache(maxsize=1)
def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32)  # (1797, 64), pixel values 0..16
    return x, torch.tensor(d.target, dtype=torch.long)


def digits(scale: float | None = None, batch_size: int = 64, seed: int = 0) -> Batches:
    """sklearn's digits, 64 features, 10 classes.

    Args:
        scale: None standardises each pixel to mean 0 and std 1 (pixels that never vary
            stay 0); a number instead multiplies the raw 0..16 pixel values by it, which
            is how an "unnormalised input" case is made.
        batch_size: samples per batch.
        seed: base seed of the batch stream.
    """
    x, y = _digits()
    x = (x - x.mean(0)) / x.std(0).clamp_min(1e-6) if scale is None else x * scale
    return Batches(x, y, batch_size, seed)


def digit_images(batch_size: int = 64, seed: int = 0) -> Batches:
    """The digits as images of shape (1, 8, 8), scaled to [0, 1]."""
    x, y = _digits()
    return Batches((x / 16.0).reshape(-1, 1, 8, 8), y, batch_size, seed)


def digit_rows(batch_size: int = 64, seed: int = 0) -> Batches:
    """The digits as sequences of 8 rows of 8 pixels, shape (8, 8), standardised."""
    x, y = _digits()
    x = (x - x.mean()) / x.std()
    return Batches(x.reshape(-1, 8, 8), y, batch_size, seed)


def first_token_task(length: int, n_in: int = 8, batch_size: int = 64, seed: int = 0) -> Batches:
    """Sequences whose class is the sign of the first input's first feature; the rest is noise.

    Only the loss at the last step is used, so the signal that trains the recurrent weights
    has to travel back through all `length` steps (the long-range memory problem of Bengio,
    Simard and Frasconi 1994).

    Returns:
        Batches with x of shape (512, length, n_in), y of shape (512,) in {0, 1}.
    """
    g = torch.Generator().manual_seed(1000 + seed)
    x = torch.randn(512, length, n_in, generator=g)
    return Batches(x, (x[:, 0, 0] > 0).long(), batch_size, seed)


def running_sum_task(length: int, n_in: int = 8, batch_size: int = 64, seed: int = 0) -> Batches:
    """Sequences with a target at every step: the sign of the running sum of feature 0.

    Returns:
        Batches with x of shape (512, length, n_in) and y of shape (512, length) in {0, 1}.
    """
    g = torch.Generator().manual_seed(2000 + seed)
    x = torch.randn(512, length, n_in, generator=g)
    return Batches(x, (x[:, :, 0].cumsum(1) > 0).long(), batch_size, seed)


def regression(n_in: int = 16, batch_size: int = 64, seed: int = 0) -> Batches:
    """y = x . w / 4 + noise with x ~ N(0, I): a linear regression target (no classes).

    Returns:
        Batches with x of shape (512, n_in), y of shape (512, 1).
    """
    g = torch.Generator().manual_seed(3000 + seed)
    x = torch.randn(512, n_in, generator=g)
    w = torch.randn(n_in, 1, generator=g)
    return Batches(x, x @ w / 4 + 0.1 * torch.randn(512, 1, generator=g), batch_size, seed)
