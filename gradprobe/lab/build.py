"""`build`: an Experiment turned into its dataset, model, loss and optimizer, all seeded.

One seed gives two independent streams (numpy's SeedSequence): one draws the initial
weights, the other the order of the training examples, so changing the batch size
does not change the initial weights and changing the init does not change the order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from gradprobe.lab.config import ConfigError, Experiment
from gradprobe.lab.datasets import Dataset, load_dataset
from gradprobe.lab.losses import make_loss
from gradprobe.lab.models import mlp, recurrent, residual_mlp
from gradprobe.lab.optim import make_optimizer

SEQUENCE_DATASETS = ("adding", "copy_memory")  # the ones that take seq_len
# task -> the losses that fit it (gradprobe.lab.losses: what each expects of its targets)
LOSSES_FOR = {
    "classification": ("cross_entropy", "quadratic", "bce"),
    "regression": ("mse", "quadratic"),
}


@dataclass(frozen=True, repr=False)
class Setup:
    """What a run trains: the data, the network, the objective and the optimizer.

    Attributes:
        experiment: the Experiment it was built from.
        dataset: the data; for MLPs inputs of shape (n, n_features), flattened.
        model: the network, initialised from the init stream of the seed.
        loss_fn: callable (outputs, targets) -> scalar loss tensor.
        optimizer: over every parameter of the model.
        data_generator: the stream that shuffles the training examples.
    """

    experiment: Experiment
    dataset: Dataset
    model: nn.Module
    loss_fn: Callable[[Tensor, Tensor], Tensor]
    optimizer: torch.optim.Optimizer
    data_generator: torch.Generator

    def __repr__(self) -> str:
        n_params = sum(p.numel() for p in self.model.parameters())
        return (
            f"Setup({self.experiment.model}, {n_params} parameters, {self.dataset!r}, "
            f"loss={self.experiment.loss}, optimizer={type(self.optimizer).__name__})"
        )


def seed_streams(seed: int) -> tuple[int, int]:
    """(init seed, data-order seed): two independent 64-bit seeds drawn from `seed`."""
    init_seed, data_seed = np.random.SeedSequence(seed).generate_state(2, dtype=np.uint64)
    return int(init_seed), int(data_seed)


def _loader_params(exp: Experiment) -> dict:
    """The dataset loader's own keywords that the experiment sets (seq_len, path)."""
    params = {}
    if exp.seq_len is not None:
        if exp.dataset not in SEQUENCE_DATASETS:
            raise ConfigError(
                f"seq_len={exp.seq_len} is for datasets {', '.join(SEQUENCE_DATASETS)}; "
                f"dataset={exp.dataset!r} has no sequence length"
            )
        params["seq_len"] = exp.seq_len
    if exp.data_path is not None:
        if exp.dataset != "mnist":
            raise ConfigError(
                f"data_path={exp.data_path!r} is for dataset='mnist' only; "
                f"dataset={exp.dataset!r} needs no files"
            )
        params["path"] = exp.data_path
    return params


def load_data(exp: Experiment) -> Dataset:
    """The experiment's dataset: seeded, limited to `limit_train`, flattened for MLPs.

    Raises:
        ConfigError: seq_len or data_path on a dataset without one, or a batch larger
            than the training set.
        FileNotFoundError: a dataset that must be on disk (mnist) is not.
    """
    data = load_dataset(exp.dataset, seed=exp.seed, **_loader_params(exp))
    changes = {}
    if exp.limit_train is not None and exp.limit_train < len(data.x_train):
        # the first examples: a random subset of a shuffled split (digits, blobs), the
        # first images in file order for mnist, as load_mnist(limit_train=) takes them
        changes = {
            "x_train": data.x_train[: exp.limit_train],
            "y_train": data.y_train[: exp.limit_train],
        }
    if not exp.is_recurrent and data.x_train.ndim > 2:  # images (n, 1, 28, 28) -> (n, 784)
        for split in ("train", "val", "test"):
            x = changes.get(f"x_{split}", getattr(data, f"x_{split}"))
            if x is not None:
                changes[f"x_{split}"] = x.reshape(len(x), -1)
    data = dataclasses.replace(data, **changes) if changes else data
    if exp.batch_size > len(data.x_train):
        raise ConfigError(
            f"batch_size={exp.batch_size} is larger than the training set of {exp.dataset!r} "
            f"({len(data.x_train)} examples); use batch_size <= {len(data.x_train)}"
        )
    return data


def n_outputs(exp: Experiment, data: Dataset) -> int:
    """Output units: one logit for bce (two classes), else the dataset's n_outputs.

    Raises:
        ConfigError: a loss that does not fit the task.
    """
    fits = LOSSES_FOR[data.task]
    if exp.loss not in fits:
        raise ConfigError(
            f"loss={exp.loss!r} does not fit {exp.dataset!r}, a {data.task} task; use one "
            f"of: {', '.join(fits)}"
        )
    if exp.loss == "bce":
        if data.n_classes != 2:
            raise ConfigError(
                f"loss='bce' needs two classes; {exp.dataset!r} has {data.n_classes}: "
                "use cross_entropy or quadratic"
            )
        return 1
    return data.n_outputs


def layer_sizes(exp: Experiment, data: Dataset) -> list[int]:
    """[n_in, width x depth, n_out] for an MLP, or the experiment's explicit sizes."""
    n_in, n_out = data.n_features, n_outputs(exp, data)
    if exp.sizes is None:
        return [n_in] + [exp.width] * exp.depth + [n_out]
    sizes = list(exp.sizes)
    if sizes[0] != n_in or sizes[-1] != n_out:
        raise ConfigError(
            f"sizes={sizes} does not fit dataset {exp.dataset!r}: it needs {n_in} inputs "
            f"and {n_out} outputs, e.g. sizes={','.join(map(str, [n_in, *sizes[1:-1], n_out]))}"
        )
    return sizes


def make_model(exp: Experiment, data: Dataset, generator: torch.Generator) -> nn.Module:
    """The network of `exp` for `data`, its weights drawn from `generator`."""
    common = {"gain": exp.gain, "bias_init": exp.bias_init, "generator": generator}
    if exp.is_recurrent:
        if data.seq_len is None:
            raise ConfigError(
                f"model={exp.model!r} needs sequences (B, T, F); dataset={exp.dataset!r} is "
                f"not one: use one of {', '.join(SEQUENCE_DATASETS)}"
            )
        return recurrent(
            exp.model,
            data.n_features,
            exp.width,
            n_outputs(exp, data),
            nonlinearity=exp.activation if exp.model == "rnn" else "tanh",
            num_layers=exp.depth,
            init=exp.init,
            # copy_memory has a target at every step: the head reads every step
            readout="all" if data.per_step_targets else "last",
            **common,
        )
    if data.seq_len is not None:
        raise ConfigError(
            f"dataset={exp.dataset!r} holds sequences; model={exp.model!r} needs flat inputs: "
            "use model rnn, lstm or gru"
        )
    common.update(norm=exp.norm, init=exp.init)
    if exp.model == "residual_mlp":
        return residual_mlp(
            exp.depth,
            exp.width,
            in_features=data.n_features,
            out_features=n_outputs(exp, data),
            alpha=exp.alpha,
            activation=exp.activation,
            **common,
        )
    sizes = layer_sizes(exp, data)
    return mlp(sizes, exp.activation, output_activation=exp.output_activation, **common)


def build(exp: Experiment) -> Setup:
    """Dataset, model, loss and optimizer of `exp`, every random draw from its seed.

    torch's global generator is seeded too, for anything that draws from it.
    """
    init_seed, data_seed = seed_streams(exp.seed)
    torch.manual_seed(exp.seed)
    data = load_data(exp)
    model = make_model(exp, data, torch.Generator().manual_seed(init_seed))
    optimizer = make_optimizer(
        exp.optimizer,
        model,
        lr=exp.lr,
        momentum=exp.momentum,
        l2=exp.l2,
        n_train=len(data.x_train),
    )
    return Setup(
        experiment=exp,
        dataset=data,
        model=model,
        loss_fn=make_loss(exp.loss),
        optimizer=optimizer,
        data_generator=torch.Generator().manual_seed(data_seed),
    )
