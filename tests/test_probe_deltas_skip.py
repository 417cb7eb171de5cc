"""delta_norm read from bias gradients when a layer sits out a step.

The probe takes ||delta|| = ||dC/db|| for every `... + bias` layer at once on the usual
step (every such layer ran, every gradient present) and layer by layer otherwise; this
checks both paths against autograd in one run, with gradients set to None and to zero
between steps (a layer that did not run keeps a zero bias gradient then).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import gradprobe as gp

SKIPPED_STEP = 1  # the step where layer "2" does not run


def _forward(model: nn.Sequential, x: torch.Tensor, step: int) -> tuple[torch.Tensor, dict]:
    """Logits and each layer's output that ran (retained for its gradient)."""
    z = {"0": model[0](x)}
    h = model[1](z["0"])
    if step != SKIPPED_STEP:
        z["2"] = model[2](h)
        h = model[3](z["2"])
    z["4"] = model[4](h)
    for t in z.values():
        t.retain_grad()
    return z["4"], z


@pytest.mark.parametrize("set_to_none", [True, False])
def test_delta_norm_of_a_layer_that_skips_a_step(set_to_none):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    probe = gp.watch(model, optimizer=opt)
    expected = []  # per step: {layer: ||dC/dz summed over the batch||, NaN where not run}
    for step in range(3):
        x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
        opt.zero_grad(set_to_none=set_to_none)
        logits, z = _forward(model, x, step)
        nn.functional.cross_entropy(logits, y).backward()
        expected.append(
            {n: float(z[n].grad.double().sum(0).norm()) if n in z else math.nan for n in "024"}
        )
        opt.step()
    probe.close()
    rec = probe.record()
    assert len(rec.steps) == 3
    for step, row in enumerate(expected):
        for name, value in row.items():
            got = rec["delta_norm"][step, rec.layers.index(name)]
            if math.isnan(value):
                assert math.isnan(got), (step, name, got)
            else:
                np.testing.assert_allclose(got, value, rtol=1e-5, err_msg=f"step {step} {name}")
