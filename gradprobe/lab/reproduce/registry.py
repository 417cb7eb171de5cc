"""Which module reproduces which experiment, and `reproduce(name, ...)` to run one."""

from __future__ import annotations

import importlib
import numbers
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

from gradprobe.lab.reproduce.result import Reproduction

# name -> module under gradprobe.lab.reproduce (imported on use: each pulls in its data)
EXPERIMENTS = {
    "nielsen-speed": "nielsen_speed",
    "nielsen-depth": "nielsen_depth",
    "circles": "circles",
    "chain": "chain",
    "weight-change": "weight_change",
    "nan": "nan",
}
# DESIGN.md's `gradprobe reproduce nielsen` runs both of the chapter's experiments.
ALIASES = {"nielsen": ("nielsen-speed", "nielsen-depth")}
NAMES = (*ALIASES, *EXPERIMENTS)
DEFAULT_OUT = Path("runs") / "reproduce"

Log = Callable[[str], None]


def module_for(name: str) -> ModuleType:
    """The module that reproduces experiment `name`; ValueError listing the names."""
    if name not in EXPERIMENTS:
        raise ValueError(f"experiment {name!r} is not one of: {', '.join(NAMES)}")
    return importlib.import_module(f"{__package__}.{EXPERIMENTS[name]}")


def resolve_seeds(seeds: int | Sequence[int] | None, default: int) -> tuple[int, ...]:
    """Seeds to run: None -> 0..default-1; an int N -> 0..N-1; a sequence as given.

    Raises:
        ValueError: N < 1, an empty sequence, a negative or repeated seed.
        TypeError: a seed that is not an integer.
    """
    if seeds is None:
        seeds = default
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ValueError(f"seeds={seeds} must be at least 1 (the number of seeds to run)")
        return tuple(range(int(seeds)))
    out = tuple(seeds)
    if not out:
        raise ValueError("seeds=() is empty; give a count >= 1 or a list of seeds")
    for s in out:
        if not isinstance(s, numbers.Integral) or isinstance(s, bool):
            raise TypeError(f"seed {s!r} is not an integer; seeds must be integers >= 0")
        if s < 0:
            raise ValueError(f"seed {s} is negative; seeds must be integers >= 0")
    if len(set(out)) != len(out):
        raise ValueError(f"seeds={list(out)} repeat a seed; each seed must be distinct")
    return tuple(int(s) for s in out)


def _run_one(name: str, seeds, full: bool, out: Path, log: Log) -> Reproduction:
    module = module_for(name)
    default = module.FULL_SEEDS if full else module.DEFAULT_SEEDS
    chosen = resolve_seeds(seeds, default)
    start = time.perf_counter()
    result = module.run(chosen, full=full, out=out / name, log=log)
    result.elapsed_s = time.perf_counter() - start
    result.out = out / name
    result.to_json(out / name / "reproduction.json")
    return result


def reproduce(
    name: str,
    *,
    seeds: int | Sequence[int] | None = None,
    full: bool = False,
    out: str | Path = DEFAULT_OUT,
    log: Log | None = None,
) -> list[Reproduction]:
    """Run experiment `name` (or both of an alias such as "nielsen") and compare.

    Args:
        name: one of `NAMES`: nielsen, nielsen-speed, nielsen-depth, circles, chain,
            weight-change, nan.
        seeds: None for the experiment's default number of seeds (more with `full`), an
            int N for seeds 0..N-1, or a list of seeds.
        full: run the original in full (every epoch and example); else the default, a
            smaller version that finishes in a few minutes on two CPU cores.
        out: parent directory; each experiment writes its runs and reproduction.json to
            OUT/NAME.
        log: called with one line of progress at a time; None is silent.

    Returns:
        one Reproduction per experiment run (two for "nielsen").

    Raises:
        ValueError: an unknown name (the message lists them) or bad seeds.
    """
    if name not in NAMES:
        raise ValueError(f"experiment {name!r} is not one of: {', '.join(NAMES)}")
    say = log or (lambda _line: None)
    parts = ALIASES.get(name, (name,))
    return [_run_one(part, seeds, full, Path(out), say) for part in parts]
