"""Oracle for the theory tests: per-layer log-gain of ||delta||^2 measured with torch autograd.

Many random networks at once (seeds batched with bmm), Gaussian inputs, a Gaussian
output gradient; ||delta^l||^2 per input, averaged over inputs and seeds, then the log of
the ratio between consecutive layers (THEORY.md's "log of mean").
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


def measure_chain(phi, sigma_w2, sigma_b2, *, n_layers=20, width=256, seeds=10, batch=32, seed=0):
    """Plain chain h^l = W^l phi(h^{l-1}) + b^l, W ~ N(0, sigma_w2 / width), b ~ N(0, sigma_b2).

    Returns:
        (mean, se): arrays of shape (n_layers - 1,): ln of the mean ||delta^l||^2 over
        ||delta^{l+1}||^2, and its standard error from the spread between seeds.
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(seeds, batch, width, generator=g)
    hs, a = [], x
    for layer in range(n_layers):
        w = torch.randn(seeds, width, width, generator=g) * math.sqrt(sigma_w2 / width)
        b = torch.randn(seeds, 1, width, generator=g) * math.sqrt(sigma_b2)
        h = torch.baddbmm(b, a, w.transpose(1, 2)).requires_grad_(True)  # (S, B, N)
        hs.append(h)
        a = phi(h) if layer < n_layers - 1 else h
    r = torch.randn(seeds, batch, width, generator=g)
    grads = torch.autograd.grad((a * r).sum(), hs)
    d2 = torch.stack([gr.double().pow(2).sum(-1).mean(-1) for gr in grads])  # (L, S)
    return _log_ratios(d2.numpy())


def _log_ratios(d2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """d2 of shape (n_layers, seeds) -> (ln of the mean ratio, se from per-seed ratios)."""
    mean = d2.mean(1)
    per_seed = np.log(d2[:-1] / d2[1:])  # (L-1, S)
    se = per_seed.std(1, ddof=1) / math.sqrt(d2.shape[1])
    return np.log(mean[:-1] / mean[1:]), se


def measure_model(build, names, *, n_in, seeds=6, batch=64, seed=0):
    """Per-layer log-gain of the outputs of modules `names` of models `build(generator)`.

    Returns:
        (mean, se) as measure_chain, over consecutive names.
    """
    g = torch.Generator().manual_seed(seed)
    d2 = np.zeros((len(names), seeds))
    for s in range(seeds):
        model = build(g)
        outputs = {}
        modules = dict(model.named_modules())
        hooks = [
            modules[n].register_forward_hook(lambda m, i, o, n=n, d=outputs: d.__setitem__(n, o))
            for n in names
        ]
        try:
            y = model(torch.randn(batch, n_in, generator=g))
        finally:
            for h in hooks:
                h.remove()
        r = torch.randn(y.shape, generator=g)
        grads = torch.autograd.grad((y * r).sum(), [outputs[n] for n in names])
        d2[:, s] = [float(gr.double().pow(2).sum(-1).mean()) for gr in grads]
    return _log_ratios(d2)


def linear_names(model: nn.Module) -> list[str]:
    """Names of the Linear modules in registration order."""
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
