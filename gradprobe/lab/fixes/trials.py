"""Run the trials: each (candidate, seed) trains for a step or wall-clock budget with the
probe on, then is diagnosed and linted; in this process or in spawned worker processes,
as the lab's sweep does.
"""

from __future__ import annotations

import concurrent.futures as cf
import math
import multiprocessing
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gradprobe.lab.fixes import edits
from gradprobe.lab.fixes.plan import Plan
from gradprobe.lab.fixes.problem import Problem, class_nll, make_optimizer

# The diagnosis reads saturation, dead units and update ratios on detail steps; ten of
# them per trial gives its rules (update_min_points = 3, window = 5) enough to work on.
DETAIL_POINTS = 10
# The share of a trial's steps averaged for its start and end loss: the first and last
# tenth (at least one step), so one noisy mini-batch does not decide.
LOSS_SHARE = 0.1


@dataclass(frozen=True)
class TrialSpec:
    """One trial to run: which candidate, which plan, which seed, where to write."""

    name: str
    plan: Plan
    seed: int
    steps: int
    budget_s: float | None
    head: str | None  # the baseline's probability head (qualified name), if any
    head_type: str | None
    classification: bool
    run_dir: str | None = None


@dataclass
class TrialRun:
    """What one trial left: its losses, findings and gain spread (all plain values)."""

    name: str
    seed: int
    status: str  # done | nonfinite | budget | failed
    steps_done: int = 0
    seconds: float = 0.0
    loss_start: float = math.nan  # reference loss, mean over the first tenth of steps
    loss_end: float = math.nan  # ... over the last tenth
    labels: tuple[str, ...] = ()  # finding keys "kind" or "kind@time"
    findings: list[dict] = field(default_factory=list)
    gain_spread: float = math.nan
    error: str | None = None
    run_dir: str | None = None

    def __repr__(self) -> str:
        return (
            f"TrialRun({self.name!r}, seed={self.seed}, {self.status}, {self.steps_done} steps, "
            f"loss {self.loss_start:.3g}->{self.loss_end:.3g}, findings={list(self.labels)})"
        )


def label(finding) -> str:
    """A finding's key: its kind, with "@time" when it is about time steps."""
    return f"{finding.kind}@time" if finding.axis == "time" else finding.kind


def _build(problem: Problem, spec: TrialSpec) -> tuple[torch.nn.Module, Any]:
    torch.manual_seed(spec.seed)
    model = problem.build_model(**spec.plan.kwargs)
    batch0 = problem.batch(0, spec.seed)
    plan, gen = spec.plan, torch.Generator().manual_seed(spec.seed)
    if plan.init is not None:
        edits.reinit_(model, plan.init[0], plan.init[1], gen, batch0)
    if plan.forget_bias is not None:
        rule, value = plan.forget_bias
        if rule == "chrono":
            edits.chrono_init_(model, int(value), gen)
        else:
            edits.set_forget_bias_(model, value)
    if plan.strip_head:
        edits.strip_head_(model, spec.head)
    return model, batch0


def _loss_fns(problem: Problem, spec: TrialSpec):
    """(the loss trained on, the reference loss every trial is compared on)."""
    train_fn = problem.loss_fn
    if spec.plan.loss == "cross_entropy":
        train_fn = _cross_entropy
    if not spec.classification:
        return train_fn, train_fn
    head_type = None if spec.plan.strip_head else spec.head_type
    return train_fn, lambda out, y: class_nll(out, y, head_type)


def _cross_entropy(output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if y.dim() == output.dim():  # one-hot rows: class probabilities as targets
        return torch.nn.functional.cross_entropy(output, y.to(output.dtype))
    return torch.nn.functional.cross_entropy(output.flatten(0, -2), y.flatten())


def run_trial(problem: Problem, spec: TrialSpec) -> TrialRun:
    """Build, train `spec.steps` steps (or until `spec.budget_s`), diagnose and lint."""
    from gradprobe.diagnose.diagnosis import diagnose
    from gradprobe.diagnose.lints import lint

    start = time.perf_counter()
    with torch.random.fork_rng(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NaN trials warn by design
        model, batch0 = _build(problem, spec)
        train_fn, ref_fn = _loss_fns(problem, spec)
        lints = lint(model, batch0, train_fn)
        run = TrialRun(spec.name, spec.seed, "done", run_dir=spec.run_dir)
        record, refs = _train(problem, spec, model, train_fn, ref_fn, run, start)
        findings = list(diagnose(record)) + lints
    run.labels = tuple(sorted({label(f) for f in findings}))
    run.findings = [f.to_dict() for f in findings]
    run.loss_start, run.loss_end = _ends(refs)
    from gradprobe.lab.fixes.ranking import gain_spread

    run.gain_spread = gain_spread(record)
    run.seconds = round(time.perf_counter() - start, 3)
    return run


def _train(problem, spec, model, train_fn, ref_fn, run: TrialRun, start: float):
    from gradprobe.attach import watch

    opt = make_optimizer(problem.optimizer, model)
    for group in opt.param_groups:
        group["lr"] *= spec.plan.lr_factor
    detail = max(1, spec.steps // DETAIL_POINTS)
    config = {"trial": spec.name, "plan": spec.plan.describe(), "seed": spec.seed}
    refs: list[float] = []
    probe = watch(
        model, optimizer=opt, run_dir=spec.run_dir, detail_every=detail, config=config,
        overwrite=spec.run_dir is not None,  # try_fixes checked `out` before any trial
    )  # fmt: skip
    with probe:
        for step in range(spec.steps):
            x, y = problem.batch(step, spec.seed)
            opt.zero_grad(set_to_none=True)
            out = model(x)
            loss = train_fn(out, y)
            loss.backward()
            if spec.plan.clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), spec.plan.clip_norm)
            opt.step()
            probe.log_loss(loss)
            with torch.no_grad():
                refs.append(float(ref_fn(out.detach(), y)))
            run.steps_done = step + 1
            if not (math.isfinite(refs[-1]) and math.isfinite(float(loss))):
                run.status = "nonfinite"
                break
            if spec.budget_s is not None and time.perf_counter() - start > spec.budget_s:
                run.status = "budget"
                break
    return probe.record(), refs


def _ends(refs: list[float]) -> tuple[float, float]:
    """Mean reference loss over the first and the last tenth of the steps run; the end is
    NaN when the run stopped on a non-finite loss."""
    if not refs:
        return math.nan, math.nan
    k = max(1, round(len(refs) * LOSS_SHARE))
    first, last = refs[:k], refs[-k:]
    mean = lambda xs: sum(xs) / len(xs) if all(map(math.isfinite, xs)) else math.nan  # noqa: E731
    return mean(first), mean(last)


def _job(problem: Problem, spec: TrialSpec) -> TrialRun:
    torch.set_num_threads(1)  # the workers share the machine's cores between them
    return _guarded(problem, spec)


def _guarded(problem: Problem, spec: TrialSpec) -> TrialRun:
    """run_trial, with a failure (a factory that rejects an option...) as its row."""
    try:
        return run_trial(problem, spec)
    except Exception as err:  # reported in the row: the other trials go on
        return TrialRun(spec.name, spec.seed, "failed", error=f"{type(err).__name__}: {err}")


@contextmanager
def trial_pool(problem: Problem, jobs: int) -> Iterator[cf.ProcessPoolExecutor | None]:
    """`jobs` spawned worker processes for the trials (None for jobs=1: run in this
    process). The problem's factory, data, loss and optimizer must then be picklable."""
    if jobs == 1:
        yield None
        return
    _check_picklable(problem)
    context = multiprocessing.get_context("spawn")  # fork would copy torch's thread pools
    with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        yield pool


def run_trials(
    problem: Problem, specs: list[TrialSpec], pool: cf.ProcessPoolExecutor | None = None
) -> list[TrialRun]:
    """Every spec's TrialRun, in order: in this process, or on `pool` (see trial_pool)."""
    if pool is None:
        return [_guarded(problem, spec) for spec in specs]
    for spec in specs:
        if spec.run_dir is not None:
            Path(spec.run_dir).parent.mkdir(parents=True, exist_ok=True)
    futures = [pool.submit(_job, problem, spec) for spec in specs]
    return [_result(f, spec) for f, spec in zip(futures, specs)]


def _result(future: cf.Future, spec: TrialSpec) -> TrialRun:
    try:
        return future.result()
    except Exception as err:  # the worker itself died (e.g. out of memory)
        return TrialRun(spec.name, spec.seed, "failed", error=f"{type(err).__name__}: {err}")


def _check_picklable(problem: Problem) -> None:
    import pickle

    try:
        pickle.dumps(problem)
    except Exception as err:
        raise ValueError(
            f"jobs > 1 runs trials in other processes, which needs a picklable factory, data, "
            f"loss and optimizer (module-level functions, not lambdas): {err}; use jobs=1"
        ) from err
