"""From the findings to the candidates worth a trial, and the remedies that can only be
suggested (an architecture change the factory does not take)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from gradprobe.diagnose.finding import Finding
from gradprobe.lab.fixes.context import Context
from gradprobe.lab.fixes.plan import Plan
from gradprobe.lab.fixes.remedies import BY_NAME, CATALOGUE, ORDER, Remedy

# Candidates tried at most, singles first: with 2 seeds that is 2 x (1 + 12) short runs.
MAX_CANDIDATES = 12
# Second round (AUTOTRAINER-style repair of a repair): the best few first-round candidates
# that resolved a target but brought new findings get one more remedy for those; at most
# FOLLOW_UP_TOP parents and FOLLOW_UP_EACH remedies per parent, so the round stays short.
FOLLOW_UP_TOP, FOLLOW_UP_EACH = 3, 3


@dataclass(frozen=True)
class Candidate:
    """A plan to try: one remedy, or two that address different findings."""

    name: str
    remedies: tuple[str, ...]
    plan: Plan
    addresses: tuple[str, ...]  # the target findings its remedies name

    @property
    def order(self) -> tuple[int, ...]:
        return tuple(ORDER[r] for r in self.remedies)

    def __repr__(self) -> str:
        return f"Candidate({self.name!r}, {self.plan.describe()}, addresses={list(self.addresses)})"


@dataclass(frozen=True)
class Suggestion:
    """A remedy that fits the findings but needs an option the factory does not take."""

    remedy: str
    addresses: tuple[str, ...]
    needs: tuple[str, ...]  # the factory keywords it would need
    snippet: str
    source: str

    def __str__(self) -> str:
        return (
            f"{self.remedy} (for {', '.join(self.addresses)}): add keyword(s) "
            f"{', '.join(self.needs)} to the factory, or by hand:\n    "
            + self.snippet.replace("\n", "\n    ")
        )


def _addresses(remedy: Remedy, targets: Sequence[str]) -> tuple[str, ...]:
    return tuple(t for t in targets if t in remedy.kinds)


def choose(
    ctx: Context,
    targets: Sequence[str],
    only: Iterable[str] | None = None,
    max_candidates: int = MAX_CANDIDATES,
) -> tuple[list[Candidate], list[Suggestion]]:
    """The candidates for the target findings (singles, then pairs that cover more of the
    targets than either alone) and the suggestions, both in catalogue order.

    Args:
        ctx: the model's Context.
        targets: the finding keys to resolve ("kind" or "kind@time").
        only: restrict to these remedy names (unknown names are an error).
        max_candidates: the most candidates returned.
    """
    allowed = _check_only(only)
    singles, suggestions = [], []
    for remedy in CATALOGUE:
        addressed = _addresses(remedy, targets)
        if not addressed or remedy.name not in allowed:
            continue
        plan = remedy.plan(ctx)
        if plan is None:
            continue
        missing = tuple(k for k in plan.kwargs if k not in ctx.accepts)
        if remedy.automatic or not missing:
            singles.append(Candidate(remedy.name, (remedy.name,), plan, addressed))
        else:
            suggestions.append(
                Suggestion(remedy.name, addressed, missing, remedy.snippet, remedy.source)
            )
    return (singles + _pairs(singles, targets))[:max_candidates], suggestions


def _pairs(singles: list[Candidate], targets: Sequence[str]) -> list[Candidate]:
    """Pairs of remedies that together address more targets than any single one does."""
    best = max((len(c.addresses) for c in singles), default=0)
    if best == len(set(targets)):
        return []
    pairs = []
    for i, a in enumerate(singles):
        for b in singles[i + 1 :]:
            covered = set(a.addresses) | set(b.addresses)
            if len(covered) <= best:
                continue
            plan = a.plan.merge(b.plan)
            if plan is not None:
                addressed = tuple(t for t in targets if t in covered)
                pairs.append(
                    Candidate(f"{a.name}+{b.name}", a.remedies + b.remedies, plan, addressed)
                )
    return sorted(pairs, key=lambda c: (-len(c.addresses), c.order))


def _check_only(only: Iterable[str] | None) -> set[str]:
    if only is None:
        return set(BY_NAME)
    names = [only] if isinstance(only, str) else list(only)
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise ValueError(f"remedies {unknown} are not among: {', '.join(BY_NAME)}")
    if not names:
        raise ValueError(f"remedies=[] leaves nothing to try; choose from: {', '.join(BY_NAME)}")
    return set(names)


def follow_ups(ranked, ctx: Context, tried: set[str], only=None) -> list[Candidate]:
    """Second-round candidates: a first-round candidate (best first) that resolved some
    target but brought new findings, merged with a remedy for those new findings.

    Args:
        ranked: the scored first-round candidates (ranking.Ranked), best first.
        ctx: the model's Context.
        tried: candidate names already run.
        only: restrict to these remedy names.
    """
    allowed, out = _check_only(only), []
    parents = [c for c in ranked if c.resolved and c.new and not c.failed][:FOLLOW_UP_TOP]
    for parent in parents:
        new_findings = _findings_of(parent, set(parent.new))
        sub = replace(ctx, findings=tuple(new_findings))
        cands, _ = choose(sub, list(parent.new), allowed, max_candidates=len(CATALOGUE))
        kids = []
        for cand in cands:
            plan = parent.plan.merge(cand.plan)
            name = f"{parent.name}+{cand.name}"
            if plan is None or name in tried or len(cand.remedies) > 1:
                continue
            kids.append(Candidate(name, parent.remedies + cand.remedies, plan, ()))
            tried.add(name)
        out += kids[:FOLLOW_UP_EACH]
    return out


def _findings_of(parent, keys: set[str]) -> list[Finding]:
    """The parent's findings (from its trials) whose keys are in `keys`, one per key."""
    seen: dict[str, Finding] = {}
    for run in parent.runs:
        for data in run.findings:
            f = Finding.from_dict(data)
            key = f"{f.kind}@time" if f.axis == "time" else f.kind
            if key in keys:
                seen.setdefault(key, f)
    return list(seen.values())
