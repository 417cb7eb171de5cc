"""`Thresholds`: every number the diagnosis rules compare against, with its source.

Defaults were calibrated on benchmarks/pathologies/ (known-sick and known-healthy
models, one set of values for all cases; see the comments) starting from the cited
heuristics. Override any of them with `gp.diagnose(rec, name=value)` or
`gradprobe diagnose RUN --set name=value`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields, replace


@dataclass(frozen=True)
class Thresholds:
    """The rules' thresholds; each default carries its source."""

    # -- which steps ---------------------------------------------------------------
    # Recorded steps in a window; gains are the median over them, so a window of 5
    # ignores up to 2 noisy steps. Two windows are read: the first steps (init, where
    # THEORY.md's predictions hold) and the last ones (after training has moved).
    window: int = 5

    # -- depth (ratios of per-unit delta, ||delta^l|| / sqrt(N_l)) -----------------
    # Nielsen, "Neural Networks and Deep Learning" ch. 5: the vanishing-gradient problem
    # is the first hidden layer learning ~100x slower than the last (speeds 0.003 vs
    # 0.285 over 4 layers); a ratio of 1e-2 is where it starts. On benchmarks/pathologies/
    # the healthy nets reach 1.8e-2 at worst (a shallow sigmoid net), the sick 6.3e-3.
    vanish_ratio: float = 1e-2
    # 1e-4: the bottom layer gets 10,000x less signal and is frozen in practice (the
    # deep sigmoid nets of Nielsen ch. 5 / Glorot & Bengio 2010 sit at 1e-4..1e-6).
    vanish_ratio_error: float = 1e-4
    # Symmetric: growth by 100x (warning) and 10,000x (error). Benchmark: healthy nets
    # up to 12x (a residual MLP), the sick from 1e3 up.
    explode_ratio: float = 1e2
    explode_ratio_error: float = 1e4  # as vanish_ratio_error, upside down
    # Fewer layer-to-layer steps than this are not "along depth": one output layer
    # whose per-unit delta differs from the hidden ones is not a trend.
    min_layers: int = 2

    # -- time (recurrent layers, ratio of ||dC/dh_t|| from t = T-1 back to t = 0) ---
    # Same cut as depth (Pascanu et al. 2013 treat time as depth). Benchmark: healthy
    # LSTM/GRU between 0.95 and 7.9 over 40 steps, the sick at 1e-11, 1e-22 and 1.8e4.
    time_vanish_ratio: float = 1e-2
    time_vanish_ratio_error: float = 1e-4  # as vanish_ratio_error
    time_explode_ratio: float = 1e2  # as explode_ratio
    time_explode_ratio_error: float = 1e4  # as explode_ratio_error
    min_time_steps: int = 2  # as min_layers

    # -- attribution --------------------------------------------------------------
    # A factor is "the cause" when it accounts for at least this share of the total
    # log-gain of the range; below it the text names both factors.
    driver_share: float = 0.5

    # -- non-finite -------------------------------------------------------------------
    # Growth of the loss or gradient norm before a NaN that names a too-large learning
    # rate: an order of magnitude is a run diverging, not one operation overflowing.
    growth_before_nonfinite: float = 10.0
    # A backward NaN after a finite forward whose smallest |activation| fell below 1e-30
    # is read as an exp overflow (a hand-written sigmoid 1/(1+exp(-z)) is exp(z) in its
    # tail and exactly 0 once exp(-z) = inf: z < -88.72 in float32, where it reaches 3e-39,
    # -709.78 in float64, 1e-308; the backward then forms 0 x inf). Benchmark: healthy
    # nets keep it at 1.6e-10 or above; the nan reproduction's NaN run reached 1.8e-296.
    tiny_activation: float = 1e-30

    # -- loss -----------------------------------------------------------------------
    # The loss at the start: the median of the first 3 logged losses (one odd batch
    # cannot set it; the runs of benchmarks/pathologies/ that blow up do so by step 3).
    loss_start_points: int = 3
    # Diverging: a median of `window` consecutive losses at 2x the starting loss or
    # more (a run whose loss doubles is going the wrong way), or 2x above its lowest
    # point having given back half the progress made.
    diverge_factor: float = 2.0
    # Plateau: the loss changed by less than 3% from the third to the last quarter of
    # the logged losses. Calibrated: the stuck runs of benchmarks/pathologies/ move by
    # at most 1.3% there (quarter medians of batch losses), runs still learning by 8% or
    # more (a small Transformer at its step 50: 9%).
    plateau_rel: float = 3e-2
    # ... while the loss is above half the starting loss: far from where training takes
    # it (the benchmark's stuck runs sit at 0.84-1.01 of it, trained runs at 0.02-0.77
    # with their loss still falling).
    plateau_floor: float = 0.5
    # A plateau's cause is a too-small learning rate when even the best-fed layer's
    # median update ratio is below 1e-5 (as update_small); above it, the gradient flow.
    plateau_update: float = 1e-5
    # Logged losses needed in each quarter to call a plateau.
    plateau_min_points: int = 5

    # -- updates (||dW|| / ||W|| per step) ---------------------------------------------
    # Karpathy, CS231n "Neural Networks Part 3" (ratio of weight updates to weight
    # magnitudes): "somewhere around 1e-3"; 1e-1 means each step rewrites a tenth of the
    # weights, 1e-5 that the weights barely move. Benchmark: healthy layers 4e-4..4e-2,
    # too-large learning rates from 0.22, too-small ones at most 2.6e-6 (best layer).
    update_large: float = 1e-1
    update_small: float = 1e-5  # 100x below the healthy 1e-3, as update_large is 100x above
    # Measurements per layer needed to call a ratio sustained (median over them); fewer
    # are enough when that is all the run holds before a NaN (an update ratio of 1 at
    # step 0 and a NaN at step 9 is a learning rate too large, not a lack of evidence).
    update_min_points: int = 3

    # -- units ----------------------------------------------------------------------
    # Karpathy, "Building makemore Part 3" (2022): |tanh| > 0.97 should hold for few units
    # ("white" columns are dead); half the units saturated stalls learning. Benchmark:
    # healthy nets at most 3%, the sick from 63% up.
    saturated_frac: float = 0.5
    saturated_frac_error: float = 0.9  # nine units in ten without a gradient
    # Dead ReLUs: Karpathy CS231n "Neural Networks Part 1" ("as much as 40% of your
    # network can be dead"); 90% dead is a network that no longer learns. Benchmark:
    # healthy nets at most 19%, the sick at 77%.
    dead_frac: float = 0.4
    dead_frac_error: float = 0.9  # as saturated_frac_error

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"threshold {f.name}={value!r} must be a positive number")
            if f.type in ("int", int):
                if int(value) != value:
                    raise ValueError(f"threshold {f.name}={value!r} must be a whole number")
                object.__setattr__(self, f.name, int(value))

    def __repr__(self) -> str:
        changed = {k: v for k, v in asdict(self).items() if v != getattr(DEFAULT, k, v)}
        inner = ", ".join(f"{k}={v!r}" for k, v in changed.items())
        return f"Thresholds({inner or 'defaults'})"

    def to_dict(self) -> dict[str, float]:
        """Every threshold by name."""
        return asdict(self)

    @classmethod
    def names(cls) -> list[str]:
        """The threshold names, in declaration order."""
        return [f.name for f in fields(cls)]

    @classmethod
    def of(cls, **overrides: float) -> Thresholds:
        """The defaults with `overrides`; an unknown name is a ValueError listing all."""
        unknown = sorted(set(overrides) - set(cls.names()))
        if unknown:
            raise ValueError(f"unknown thresholds {unknown}; allowed: {', '.join(cls.names())}")
        return replace(DEFAULT, **overrides)

    @classmethod
    def parse(cls, assignments: Iterable[str]) -> Thresholds:
        """The defaults with "name=value" strings applied, typed like the default."""
        overrides: dict[str, float] = {}
        for text in assignments:
            name, sep, raw = text.partition("=")
            name = name.strip()
            if not sep or name not in cls.names():
                raise ValueError(
                    f"--set {text!r} must be name=value with name one of: {', '.join(cls.names())}"
                )
            kind = type(getattr(DEFAULT, name))
            try:
                overrides[name] = kind(raw.strip())
            except ValueError:
                raise ValueError(
                    f"--set {text!r}: {raw.strip()!r} is not a {kind.__name__} "
                    f"(default {getattr(DEFAULT, name)!r})"
                ) from None
        return cls.of(**overrides)


DEFAULT = Thresholds()
