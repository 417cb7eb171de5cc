"""One epoch of Nielsen's [784, 30, 30, 10] on MNIST, with the probe on, per model.

The setting of NNDL ch. 3 (network2.py): sigmoid units, W ~ N(0, 1/n_in), b ~ N(0, 1),
cross-entropy cost on sigmoid outputs, 50,000 training images, mini-batch 10, eta 0.1,
lambda 5.0. Measured in one run, on one machine, one after another:

  (a) network2-style numpy: the per-example backprop loop inside update_mini_batch, in
      float64, timed on --numpy-examples images and scaled to 50,000;
  (b) a plain PyTorch loop (nn.Sequential, torch.optim.SGD), no probe;
  (c) the same loop with gradprobe.watch recording every step;
  (d) train_ensemble: M members in one batched network, each with its own weights, data
      order and probe record (every step), time / M = time per model-epoch.

(b)-(d) run at each --threads value (default 2, then 1): on this shared 2-core VM the
faster of the two depends on what else runs.

    python benchmarks/lab_speed.py                 # the full run, a few minutes
    python benchmarks/lab_speed.py --quick         # a tenth of the epoch, fewer M
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import gradprobe as gp
from gradprobe.lab.datasets import load_dataset
from gradprobe.lab.ensemble import cross_entropy_cost, train_ensemble
from gradprobe.lab.models import mlp

SIZES = [784, 30, 30, 10]
BATCH, ETA, LMBDA = 10, 0.1, 5.0  # network2.py's settings for this experiment (NNDL ch. 3)
NETWORK2_SECONDS = 3.1  # Nielsen's own network2.py, this epoch, this machine (issue 3)
TARGET = NETWORK2_SECONDS / 10  # the goal: 10x faster per model-epoch
SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def numpy_epoch(x: np.ndarray, y: np.ndarray, n_train: int, limit: int, seed: int) -> float:
    """network2-style SGD over the first `limit` examples of a shuffle; returns seconds.

    As network2.py: column vectors, weights float64, backprop one example at a time, the
    gradients summed over the mini-batch, then w <- (1 - eta lambda / n) w - eta/m sum dw.
    """
    rng = np.random.default_rng(seed)
    ws = [rng.standard_normal((o, i)) / np.sqrt(i) for i, o in zip(SIZES[:-1], SIZES[1:])]
    bs = [rng.standard_normal((o, 1)) for o in SIZES[1:]]
    order = rng.permutation(len(x))[:limit]
    start = time.perf_counter()
    for k in range(0, limit, BATCH):
        batch = order[k : k + BATCH]
        nabla_w = [np.zeros(w.shape) for w in ws]
        nabla_b = [np.zeros(b.shape) for b in bs]
        for i in batch:
            activations, a = [x[i]], x[i]
            for w, b in zip(ws, bs):
                a = _sigmoid(w @ a + b)
                activations.append(a)
            delta = a - y[i]  # cross-entropy cost on sigmoid outputs: dC/dz = a - y
            for layer in range(len(ws) - 1, -1, -1):
                nabla_b[layer] += delta
                nabla_w[layer] += delta @ activations[layer].T
                if layer:
                    a = activations[layer]
                    delta = (ws[layer].T @ delta) * a * (1 - a)  # sigmoid'(z) = a (1 - a)
        decay = 1 - ETA * LMBDA / n_train
        ws = [decay * w - ETA / len(batch) * nw for w, nw in zip(ws, nabla_w)]
        bs = [b - ETA / len(batch) * nb for b, nb in zip(bs, nabla_b)]
    return time.perf_counter() - start


def solo_epoch(model, x, y, steps: int, probe: bool, seed: int) -> float:
    """The plain PyTorch loop for `steps` mini-batches; returns seconds."""
    decayed = [p for p in model.parameters() if p.dim() > 1]
    rest = [p for p in model.parameters() if p.dim() == 1]
    groups = [{"params": decayed, "weight_decay": LMBDA / len(x)}, {"params": rest}]
    opt = torch.optim.SGD(groups, lr=ETA)
    onehot = torch.nn.functional.one_hot(y, SIZES[-1]).float()
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    watch = gp.watch(model, opt) if probe else None
    start = time.perf_counter()
    for k in range(steps):
        idx = order[k * BATCH : (k + 1) * BATCH]
        opt.zero_grad()
        loss = cross_entropy_cost(model(x[idx]), onehot[idx])
        loss.backward()
        opt.step()
        if watch is not None:
            watch.log_loss(loss)
    if watch is not None:
        watch.close()
        watch.record()
    return time.perf_counter() - start


def accuracy(models, x_test, y_test) -> np.ndarray:
    with torch.no_grad():
        return np.array([(m(x_test).argmax(1) == y_test).float().mean().item() for m in models])


def ensemble_epoch(members: int, x, y, n: int) -> tuple[float, list]:
    """train_ensemble of `members` fresh models over the first n examples; (seconds, models)."""
    models = [mlp(SIZES, "sigmoid", "nielsen", generator=torch.Generator().manual_seed(s))
              for s in range(members)]  # fmt: skip
    start = time.perf_counter()
    records = train_ensemble(
        models, x[:n], y[:n], epochs=1, batch_size=BATCH, lr=ETA, l2=LMBDA,
        seeds=[1000 + s for s in range(members)],
    )  # fmt: skip
    seconds = time.perf_counter() - start
    assert len(records) == members and len(records[0]) == n // BATCH
    return seconds, models


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a tenth of the epoch, M in 8, 32")
    p.add_argument("--members", type=int, nargs="+", default=None, help="ensemble sizes M")
    p.add_argument("--threads", type=int, nargs="+", default=[2, 1], help="torch threads, each")
    p.add_argument("--numpy-examples", type=int, default=5000, help="timed for (a)")
    default = os.environ.get("GRADPROBE_MNIST") or (SHARED_MNIST if SHARED_MNIST.is_dir() else None)
    p.add_argument("--mnist", default=default, help="MNIST directory (default $GRADPROBE_MNIST)")
    return p.parse_args()


def row(name: str, seconds: float, numpy_seconds: float, extra: str = "") -> None:
    print(f"{name:<48} {seconds:8.3f} s {numpy_seconds / seconds:7.1f}x  {extra}", flush=True)


def torch_rows(args, data, n: int, t_np: float) -> None:
    """(b), (c) and (d) at the current thread count."""
    x, y = data.x_train, data.y_train
    scale = len(x) / n  # times are reported per full 50,000-image epoch
    threads = f"[{torch.get_num_threads()} thr]"
    solo_epoch(mlp(SIZES), x, y, 50, probe=True, seed=0)  # warm-up: kernels, allocator
    plain = mlp(SIZES, generator=torch.Generator().manual_seed(0))
    t_plain = solo_epoch(plain, x, y, n // BATCH, probe=False, seed=0) * scale
    acc = accuracy([plain], data.x_test, data.y_test)[0]
    row(f"(b) PyTorch loop, no probe {threads}", t_plain, t_np, f"test accuracy {acc:.3f}")
    watched = mlp(SIZES, generator=torch.Generator().manual_seed(0))
    t_watch = solo_epoch(watched, x, y, n // BATCH, probe=True, seed=0) * scale
    row(f"(c) PyTorch loop + gradprobe.watch {threads}", t_watch, t_np)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for m in args.members:
            ensemble_epoch(m, x, y, 100 * BATCH)  # warm-up at this M: buffers, allocator
            seconds, models = ensemble_epoch(m, x, y, n)
            per_model = seconds * scale / m
            acc = accuracy(models, data.x_test, data.y_test)
            verdict = "meets" if per_model <= TARGET else "misses"
            row(f"(d) ensemble M={m}, records, + probe {threads}", per_model, t_np,
                f"test accuracy {acc.min():.3f}-{acc.max():.3f}; {verdict} the target "
                f"({per_model / TARGET:.2f}x of it)")  # fmt: skip


def main() -> None:
    args = parse()
    data = load_dataset("mnist", seed=0, path=args.mnist)
    x, y = data.x_train, data.y_train  # (50000, 784) float32 k / 256, int64
    n = len(x) // 10 if args.quick else len(x)
    args.members = args.members or ([8, 32] if args.quick else [8, 32, 64, 128])
    print(f"torch {torch.__version__}; load average {os.getloadavg()[0]:.2f}; epoch = "
          f"{len(x)} images, batch {BATCH}; target {TARGET:.2f} s per model-epoch")  # fmt: skip
    y_onehot = np.eye(SIZES[-1])[y.numpy()][:, :, None]  # (n, 10, 1), network2's layout
    x_col = x.numpy()[:, :, None]  # (n, 784, 1) float32, as network2's mnist_loader
    limit = min(args.numpy_examples, n)
    t_np = numpy_epoch(x_col, y_onehot, len(x), limit, seed=0) * len(x) / limit
    print(f"{'method':<48} {'per model-epoch':>10} {'vs (a)':>8}")
    row(f"(a) network2-style numpy ({limit} ex., scaled)", t_np, t_np)
    for threads in args.threads:
        torch.set_num_threads(threads)
        torch_rows(args, data, n, t_np)
    print(f"load average at the end {os.getloadavg()[0]:.2f}; target = {NETWORK2_SECONDS} s "
          f"(network2.py, this machine) / 10 = {TARGET:.2f} s")  # fmt: skip


if __name__ == "__main__":
    main()
