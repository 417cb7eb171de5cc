"""Watch the gradient vanish in a deep sigmoid net, and not in a ReLU one.

Trains two 6-layer networks on scikit-learn's 8x8 digits (bundled with scikit-learn,
nothing is downloaded) with gradprobe attached, writes a run directory for each and prints
each layer's learning speed ||delta^l|| (Nielsen, ch. 5) side by side.

    python examples/quickstart.py            # writes runs/quickstart-sigmoid, -relu
    gradprobe show runs/quickstart-sigmoid   # the per-layer table of one run
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

import gradprobe as gp

SIZES = [64, 30, 30, 30, 30, 30, 10]


def network(act: type[nn.Module], init) -> nn.Sequential:
    layers: list[nn.Module] = []
    for n_in, n_out in zip(SIZES[:-1], SIZES[1:]):
        lin = nn.Linear(n_in, n_out)
        init(lin)
        layers += [lin, act()]
    return nn.Sequential(*layers[:-1])


def nielsen_init(lin: nn.Linear) -> None:
    """W ~ N(0, 1/n_in), b ~ N(0, 1): Nielsen's improved initialisation (ch. 3)."""
    nn.init.normal_(lin.weight, 0.0, lin.in_features**-0.5)
    nn.init.normal_(lin.bias, 0.0, 1.0)


def he_init(lin: nn.Linear) -> None:
    """W ~ N(0, 2/n_in), b = 0 (He et al. 2015)."""
    nn.init.kaiming_normal_(lin.weight, nonlinearity="relu")
    nn.init.zeros_(lin.bias)


def train(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 300):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(0)
    run_dir = f"runs/quickstart-{name}"
    with gp.watch(model, opt, run_dir=run_dir, overwrite=True) as probe:
        for _ in range(steps):
            idx = torch.randint(0, len(x), (32,), generator=g)
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            probe.log_loss(loss)
    return gp.load(run_dir)


def main() -> None:
    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target)
    torch.manual_seed(0)
    runs = {
        "sigmoid": train("sigmoid", network(nn.Sigmoid, nielsen_init), x, y),
        "relu": train("relu", network(nn.ReLU, he_init), x, y),
    }
    print("learning speed ||delta^l|| per layer, median over 300 steps:")
    print(f"{'layer':>8} {'sigmoid + Nielsen init':>24} {'ReLU + He init':>18}")
    for j, layer in enumerate(runs["sigmoid"].layers):
        cells = [np.nanmedian(runs[k]["delta_norm"][:, j]) for k in ("sigmoid", "relu")]
        print(f"{layer:>8} {cells[0]:>24.2e} {cells[1]:>18.2e}")
    for k, rec in runs.items():
        d = np.nanmedian(rec["delta_norm"], axis=0)
        print(
            f"{k}: first layer learns {d[0] / d[-2]:.1e} times as fast as the last hidden "
            f"layer; loss {rec.loss[0]:.2f} -> {rec.loss[-1]:.2f}"
        )
    print("runs written to runs/quickstart-sigmoid and runs/quickstart-relu")


if __name__ == "__main__":
    main()
