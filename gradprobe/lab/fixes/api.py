"""`try_fixes`: diagnose (or take the findings), choose candidate remedies, run each for a
short budget over a few seeds with the probe on, and rank them."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from gradprobe.diagnose.finding import KINDS, Finding
from gradprobe.lab.fixes.candidates import MAX_CANDIDATES, Candidate, choose, follow_ups
from gradprobe.lab.fixes.context import Context
from gradprobe.lab.fixes.plan import BASELINE
from gradprobe.lab.fixes.problem import Problem, default_optimizer
from gradprobe.lab.fixes.ranking import Ranked, rank, score
from gradprobe.lab.fixes.result import FixResult
from gradprobe.lab.fixes.trials import TrialSpec, run_trials, trial_pool

# A short trial: 100 steps, ten detail measurements at the probe's detail schedule, is
# twice the pathology benchmark's 50-step runs; two seeds tell a fix from a lucky draw.
DEFAULT_STEPS = 100
DEFAULT_SEEDS = (0, 1)


def _check_steps(steps: Any) -> int:
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"steps={steps!r} is not valid: must be an int >= 1")
    return int(steps)


def _check_seeds(seeds: Any) -> tuple[int, ...]:
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool):
        seeds = (seeds,)
    if not isinstance(seeds, Iterable) or isinstance(seeds, str):
        raise ValueError(f"seeds={seeds!r} is not valid: give a list of ints >= 0, e.g. (0, 1)")
    out = tuple(seeds)
    bad = [s for s in out if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 0]
    if not out or bad or len(set(out)) != len(out):
        raise ValueError(
            f"seeds={seeds!r} is not valid: need at least one seed, distinct ints >= 0, e.g. (0, 1)"
        )
    return tuple(int(s) for s in out)


def _check_budget(budget_s: Any, jobs: Any) -> None:
    if budget_s is not None and not (isinstance(budget_s, numbers.Real) and budget_s > 0):
        raise ValueError(f"budget_s={budget_s!r} is not valid: must be a number > 0 or None")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs={jobs!r} is not valid: must be an int >= 1")


def _check_out(out: str | Path | None, overwrite: bool) -> None:
    if out is None:
        return
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ValueError(
            f"out={str(out)!r} already holds files; choose another directory or pass "
            "overwrite=True to replace the trials there"
        )


def as_target(item: Finding | dict | str) -> tuple[str, Finding | None]:
    """The key ("kind" or "kind@time") of a Finding, a Finding dict or a key string."""
    if isinstance(item, dict):
        item = Finding.from_dict(item)
    if isinstance(item, Finding):
        return (f"{item.kind}@time" if item.axis == "time" else item.kind), item
    if isinstance(item, str):
        kind = item.removesuffix("@time")
        if kind not in KINDS:
            raise ValueError(f"finding kind {item!r} is not one of: {', '.join(KINDS)}")
        return item, None
    raise TypeError(f"a finding must be a Finding, its dict or a kind; got {type(item).__name__}")


@dataclass(frozen=True)
class _Trials:
    """Runs candidates over the seeds: one TrialSpec per (candidate, seed)."""

    problem: Problem
    seeds: tuple[int, ...]
    steps: int
    budget_s: float | None
    head: str | None
    head_type: str | None
    classification: bool
    out: str | Path | None
    pool: Any

    def run(self, cands: list[Candidate]) -> list[Ranked]:
        specs = [
            TrialSpec(
                c.name,
                c.plan,
                seed,
                self.steps,
                self.budget_s,
                self.head,
                self.head_type,
                self.classification,
                None if self.out is None else str(Path(self.out) / c.name / f"seed{seed}"),
            )  # fmt: skip
            for c in cands
            for seed in self.seeds
        ]
        runs, n = run_trials(self.problem, specs, self.pool), len(self.seeds)
        return [
            Ranked(c.name, c.remedies, c.plan, runs[i * n : (i + 1) * n], order=c.order)
            for i, c in enumerate(cands)
        ]


def try_fixes(
    build_model: Callable[..., torch.nn.Module],
    data: Any,
    loss_fn: Callable,
    findings: Sequence[Finding | dict | str] | None = None,
    *,
    steps: int = DEFAULT_STEPS,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    optimizer: Callable = default_optimizer,
    budget_s: float | None = None,
    jobs: int = 1,
    out: str | Path | None = None,
    remedies: Iterable[str] | None = None,
    batch_size: int = 64,
    accepts: Iterable[str] | None = None,
    max_candidates: int = MAX_CANDIDATES,
    overwrite: bool = False,
) -> FixResult:
    """Try the remedies that fit the findings, each for a short budget, and rank them.

    Args:
        build_model: the model factory, called with the plan's keywords. Keywords it names
            among activation (a gradprobe.lab activation name), norm ("batch" / "layer")
            and residual_alpha (branch scale) let the architecture remedies run; without
            them only init rescaling, forget-gate bias, clipping, learning rate and loss
            changes are tried, and the rest are suggested with code.
        data: .batch(step) -> (x, y), a callable step -> (x, y), or tensors (x, y).
        loss_fn: loss_fn(output, y) -> scalar tensor.
        findings: what to resolve: Findings, their dicts or kind keys ("kind@time" for
            the time axis). None: diagnose the baseline trials and resolve what they show.
        steps: optimizer steps per trial (>= 1).
        seeds: one trial per seed per candidate; the seed fixes init and data order.
        optimizer: model -> Optimizer (or an Optimizer class / partial over parameters);
            default SGD lr 0.01, momentum 0.9.
        budget_s: also stop each trial after this many seconds (the ranking then depends
            on the machine's speed; steps alone keep it reproducible).
        jobs: worker processes (spawned; the arguments must then be picklable).
        out: write each trial's run directory under out/<candidate>/seed<k>.
        remedies: restrict to these remedy names (see remedies.CATALOGUE).
        batch_size: mini-batch size when `data` is (x, y).
        accepts: the factory options to use, instead of reading its signature.
        max_candidates: the most candidates tried.
        overwrite: replace trials already under `out`.

    Returns:
        a FixResult: the ranked table (print it), `best`, `to_dict()`.

    Raises:
        ValueError: steps <= 0, no seeds, an unknown finding kind or remedy name, an
            `out` that already holds files (without overwrite).
    """
    steps, seeds = _check_steps(steps), _check_seeds(seeds)
    _check_budget(budget_s, jobs)
    _check_out(out, overwrite)
    given = None if findings is None else [as_target(f) for f in findings]
    problem = Problem(build_model, data, loss_fn, optimizer, batch_size)
    batch0 = problem.batch(0, seeds[0])
    with torch.random.fork_rng():
        torch.manual_seed(seeds[0])
        model = build_model()
    ctx = Context.read(model, batch0, loss_fn, build_model, (), accepts)
    head_type = type(model.get_submodule(ctx.head)).__name__ if ctx.head else None
    with trial_pool(problem, jobs) as pool:
        trials = _Trials(problem, seeds, steps, budget_s, ctx.head, head_type,
                         ctx.classification, out, pool)  # fmt: skip
        return _search(trials, ctx, given, remedies, max_candidates, jobs)


def _search(trials: _Trials, ctx: Context, given, remedies, max_candidates, jobs) -> FixResult:
    """Baseline, first round, follow-ups; scored and ranked."""
    base = trials.run([Candidate("baseline", (), BASELINE, ())])[0]
    if given is None:  # the baseline's own findings are the targets
        given = _found(base.runs)
    targets = tuple(dict.fromkeys(key for key, _ in given))
    ctx = replace(ctx, findings=tuple(f for _, f in given if f is not None))
    cands, suggestions = choose(ctx, targets, remedies, max_candidates)
    baseline_labels = set().union(*(set(r.labels) for r in base.runs))
    base = score(base, targets, baseline_labels)
    args = (targets, baseline_labels, base.loss_end)
    scored = [score(c, *args) for c in trials.run(cands)]
    extra = follow_ups(rank(scored), ctx, {c.name for c in cands}, remedies)
    scored += [score(c, *args) for c in trials.run(extra)]
    reference = "class NLL (nats)" if ctx.classification else "the given loss_fn"
    settings = {
        "steps": trials.steps, "seeds": list(trials.seeds), "budget_s": trials.budget_s,
        "jobs": jobs, "reference": reference, "accepts": sorted(ctx.accepts),
        "out": None if trials.out is None else str(trials.out),
    }  # fmt: skip
    notes = [] if cands else ["no remedy in the catalogue fits these findings and this model"]
    failed = [r for c in [base, *scored] for r in c.runs if r.status == "failed"]
    if failed:
        notes.append(f"{len(failed)} trial(s) failed and rank last; first: {failed[0].error}")
    return FixResult(targets, base, rank(scored), suggestions, settings, notes)


def _found(runs) -> list[tuple[str, Finding | None]]:
    """The findings of the baseline trials, one per key, in the diagnosis' order."""
    seen: dict[str, Finding] = {}
    for run in runs:
        for data in run.findings:
            key, finding = as_target(data)
            seen.setdefault(key, finding)
    return list(seen.items())
