"""`fix_run`: the fix trials for a lab run directory. Its Experiment (from run.json) becomes
a factory that takes every architecture option, the lab's data, loss and optimizer.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gradprobe.lab.build import load_data, make_model, seed_streams
from gradprobe.lab.config import ConfigError, Experiment
from gradprobe.lab.losses import make_loss
from gradprobe.lab.optim import make_optimizer

_DATA: dict[tuple, Any] = {}  # per process: a dataset is loaded once for all its trials


def _dataset(exp: Experiment):
    key = (exp.dataset, exp.seed, exp.limit_train, exp.data_path, exp.seq_len, exp.is_recurrent)
    if key not in _DATA:
        _DATA[key] = load_data(exp)
    return _DATA[key]


@dataclass(frozen=True)
class LabModel:
    """The Experiment's network, rebuilt with a remedy's options; weights drawn from
    torch's global generator (the trial seeds it)."""

    experiment: Experiment

    def __call__(self, activation=None, norm=None, residual_alpha=None) -> nn.Module:
        changes: dict[str, Any] = {}
        if activation is not None:
            changes["activation"] = activation
        if norm is not None:
            changes["norm"] = norm
        if residual_alpha is not None:
            changes.update(model="residual_mlp", alpha=residual_alpha)
        exp = dataclasses.replace(self.experiment, **changes)
        return make_model(exp, _dataset(exp), None)


def lab_options(exp: Experiment) -> frozenset[str]:
    """The architecture options the lab can rebuild `exp` with."""
    if exp.model == "mlp":
        return frozenset({"activation", "norm"} | (set() if exp.sizes else {"residual_alpha"}))
    if exp.model == "residual_mlp":
        return frozenset({"activation", "norm"})
    return frozenset({"activation"} if exp.model == "rnn" else set())


@dataclass(frozen=True)
class LabData:
    """The Experiment's training set in shuffled mini-batches, one permutation per epoch
    drawn from the data stream of its seed (as the lab's trainer does)."""

    experiment: Experiment

    def batch(self, step: int):
        data, bs = _dataset(self.experiment), self.experiment.batch_size
        n = len(data.x_train)
        epoch, i = divmod(step, math.ceil(n / bs))
        seed = seed_streams(self.experiment.seed)[1] + epoch
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        idx = order[i * bs : (i + 1) * bs]
        return data.x_train[idx], data.y_train[idx]


@dataclass(frozen=True)
class LabOptimizer:
    """The Experiment's optimizer over a model."""

    experiment: Experiment

    def __call__(self, model: nn.Module) -> torch.optim.Optimizer:
        e = self.experiment
        n_train = len(_dataset(e).x_train)
        return make_optimizer(
            e.optimizer, model, lr=e.lr, momentum=e.momentum, l2=e.l2, n_train=n_train
        )


def experiment_of(run_dir: str | Path) -> Experiment:
    """The Experiment a lab run was trained with (its run.json's config)."""
    from gradprobe.record import load

    meta = load(run_dir).meta
    config = meta.get("config")
    if not isinstance(config, dict) or "seed" not in config:
        raise ConfigError(
            f"{run_dir} is not a lab run: its run.json has no Experiment config "
            "(train one with `gradprobe train`)"
        )
    return Experiment.from_dict(config)


def run_findings(run_dir: str | Path, exp: Experiment) -> list:
    """The run's findings: the diagnosis of its record and the lints of its set-up."""
    from gradprobe.diagnose.diagnosis import diagnose
    from gradprobe.diagnose.lints import lint
    from gradprobe.record import load

    model = LabModel(exp)()
    return list(diagnose(load(run_dir))) + lint(model, LabData(exp).batch(0), make_loss(exp.loss))


def fix_run(
    run_dir: str | Path,
    *,
    steps: int | None = None,
    seeds=None,
    budget_s: float | None = None,
    out: str | Path | None = None,
    jobs: int = 1,
    overwrite: bool = False,
    remedies=None,
):
    """Diagnose a lab run and try the remedies for its findings.

    Args:
        run_dir: a directory written by `gradprobe train` (run.json holds the Experiment).
        steps: steps per trial; None: try_fixes' default, capped by the run's own steps.
        seeds: None: the run's seed and the next.
        budget_s, out, jobs, overwrite, remedies: as for `try_fixes`.

    Returns:
        a FixResult (empty ranking, with a note, when the run has no finding).
    """
    from gradprobe.lab.fixes.api import DEFAULT_STEPS, try_fixes

    exp = experiment_of(run_dir)
    findings = run_findings(run_dir, exp)
    if steps is None:
        steps = min(DEFAULT_STEPS, exp.steps) if exp.steps else DEFAULT_STEPS
    return try_fixes(
        LabModel(exp), LabData(exp), make_loss(exp.loss), findings,
        steps=steps, seeds=seeds if seeds is not None else (exp.seed, exp.seed + 1),
        optimizer=LabOptimizer(exp), budget_s=budget_s, jobs=jobs, out=out,
        accepts=lab_options(exp), batch_size=exp.batch_size, overwrite=overwrite,
        remedies=remedies,
    )  # fmt: skip
