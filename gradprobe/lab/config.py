"""`Experiment`: one training run of the lab, as a frozen dataclass (nanoGPT style).

Every default carries its reason. An Experiment comes from keywords, a TOML file or
`key=value` overrides, each value type-checked against the field's type; an unknown key
is an error that lists the valid ones. The seed is required: a run without one cannot be
reproduced, so none is ever made up.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradprobe.lab.activations import ACTIVATIONS
from gradprobe.lab.datasets import DATASETS
from gradprobe.lab.init import INITIALISERS
from gradprobe.lab.losses import LOSSES
from gradprobe.lab.models import NORMS, RECURRENT_KINDS
from gradprobe.lab.optim import OPTIMIZERS

MODELS = ("mlp", "residual_mlp", *RECURRENT_KINDS)
BIAS_MODES = ("zeros", "normal")  # initialise_'s named bias rules: 0, or N(0, 1) (Nielsen)
RNN_NONLINEARITIES = ("tanh", "relu")  # the two torch.nn.RNN accepts
_NONE_WORDS = ("none", "null")  # how a command line says None


class ConfigError(ValueError):
    """A bad key or value in an Experiment, its TOML file or its overrides."""


@dataclass(frozen=True)
class Experiment:
    """One lab run: data, network, loss, optimizer, schedule, probe and seed.

    Fields are documented by their comments below; `sizes`, when given, replaces
    depth and width by the full layer sizes including input and output.
    """

    seed: int | None = None  # required (None is refused): a run must be reproducible
    name: str | None = None  # a label for tables; None: the run directory's name
    # data
    dataset: str = "digits"  # embedded in scikit-learn: runs anywhere, no download
    limit_train: int | None = None  # None: every training example
    data_path: str | None = None  # mnist's files; None: $GRADPROBE_MNIST, then the usual places
    seq_len: int | None = None  # adding / copy_memory length T; None: the dataset's own
    # network
    model: str = "mlp"  # Nielsen's fully connected net, where vanishing was first shown
    depth: int = 3  # hidden layers (recurrent: stacked layers); Nielsen ch. 5 uses 1-4
    width: int = 30  # units per hidden layer: Nielsen ch. 5's [784, 30, ..., 30, 10]
    sizes: tuple[int, ...] | None = None  # e.g. 784,30,30,10; None: from depth and width
    activation: str = "sigmoid"  # Nielsen's neuron, the one whose gradient vanishes
    output_activation: str | None = None  # None: logits straight into the loss
    norm: str | None = None  # batch / layer; None: the plain net of the textbooks
    init: str = "nielsen"  # W ~ N(0, 1/n_in), b ~ N(0, 1): Nielsen's network2 default
    gain: float | None = None  # None: the initialiser's own gain
    bias_init: float | str | None = None  # a constant, zeros or normal; None: init's rule
    alpha: float = 1.0  # residual branch scale x + alpha * f(x); 1 is the plain ResNet
    # objective and optimizer
    loss: str = "cross_entropy"  # from logits, numerically stable
    optimizer: str = "sgd"  # plain mini-batch SGD, as in the textbook experiments
    lr: float = 0.1  # Nielsen's eta in his ch. 5 vanishing-gradient runs (cross-entropy)
    momentum: float = 0.0  # none in Nielsen's SGD
    l2: float = 0.0  # Nielsen's lambda (weight decay lambda / n on weights); off by default
    batch_size: int = 10  # Nielsen's mini-batch size
    epochs: int = 3  # enough for the first-epoch gradient picture and a trend
    steps: int | None = None  # cap on optimizer steps; None: epochs decide
    # probe
    every: int = 1  # record every step: the overhead is small (BENCHMARKS.md)
    detail_every: int = 10  # 1 in 10 throughout (watch: 1 in 100 after step 1000)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type-check (and parse strings) field by field
            object.__setattr__(self, f.name, coerce(f.name, getattr(self, f.name)))
        for check in _CHECKS:
            check(self)

    # -- construction ----------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Experiment:
        """An Experiment from a mapping; each value is type-checked against its field."""
        unknown = [key for key in values if key not in FIELDS]
        if unknown:
            raise _unknown(unknown[0])
        return cls(**values)

    @classmethod
    def from_toml(cls, path: str | Path, overrides: Iterable[str] = ()) -> Experiment:
        """An Experiment from a TOML file of top-level `key = value`, then overrides."""
        return cls.from_dict({**read_toml(path), **parse_overrides(overrides)})

    def with_overrides(self, overrides: Iterable[str]) -> Experiment:
        """A copy with `key=value` strings applied, e.g. ["depth=5", "sizes=784,30,10"]."""
        return dataclasses.replace(self, **parse_overrides(overrides))

    def to_dict(self) -> dict[str, Any]:
        """Every field, JSON- and TOML-ready (sizes as a list)."""
        out = dataclasses.asdict(self)
        if out["sizes"] is not None:
            out["sizes"] = list(out["sizes"])
        return out

    @property
    def is_recurrent(self) -> bool:
        """True for rnn / lstm / gru, which take sequences (B, T, F)."""
        return self.model in RECURRENT_KINDS


FIELDS = tuple(f.name for f in dataclasses.fields(Experiment))
_TYPES = typing.get_type_hints(Experiment)


# -- parsing -------------------------------------------------------------------------
def _unknown(key: str) -> ConfigError:
    return ConfigError(f"unknown key {key!r}; valid keys: {', '.join(FIELDS)}")


def _bad(key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"{key}={value!r} is not valid: {allowed}")


def _parse_scalar(key: str, kind: type, value: Any) -> Any:
    """`value` as an int, float or str (the scalar field types), from text or as given."""
    if isinstance(value, bool):
        raise _bad(key, value, f"expected {kind.__name__}, not a boolean")
    try:
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value) if isinstance(value, (int, float)) else int(str(value), 10)
        if kind is float:
            return float(value)
    except (TypeError, ValueError):
        raise _bad(key, value, f"expected {kind.__name__}") from None
    if not isinstance(value, str):
        raise _bad(key, value, "expected a string")
    return value


def _coerce_one(key: str, kind: Any, value: Any) -> Any:
    if typing.get_origin(kind) is tuple:  # sizes: "784,30,10" or [784, 30, 10]
        parts = value.split(",") if isinstance(value, str) else value
        if not isinstance(parts, (list, tuple)):
            raise _bad(key, value, "expected comma-separated ints, e.g. 784,30,30,10")
        return tuple(_parse_scalar(key, int, p.strip() if isinstance(p, str) else p) for p in parts)
    return _parse_scalar(key, kind, value.strip() if isinstance(value, str) else value)


def coerce(key: str, value: Any) -> Any:
    """`value` for field `key`, parsed from a string or checked against the field type.

    A union (e.g. float | str) takes the first member type the value fits.

    Raises:
        ConfigError: unknown key, or a value of the wrong type.
    """
    if key not in _TYPES:
        raise _unknown(key)
    hint = _TYPES[key]
    kinds = (hint,) if typing.get_origin(hint) is tuple else typing.get_args(hint) or (hint,)
    optional = type(None) in kinds
    kinds = tuple(k for k in kinds if k is not type(None))
    if value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS):
        if optional:
            return None
        raise _bad(key, value, "a value is required")
    for kind in kinds[:-1]:
        try:
            return _coerce_one(key, kind, value)
        except ConfigError:
            continue
    return _coerce_one(key, kinds[-1], value)


def parse_overrides(overrides: Iterable[str]) -> dict[str, Any]:
    """{"key": typed value} from strings "key=value"; a later key wins."""
    if isinstance(overrides, str):
        overrides = [overrides]
    parsed = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not key=value (e.g. depth=5)")
        parsed[key.strip()] = coerce(key.strip(), value)
    return parsed


def read_toml(path: str | Path) -> dict[str, Any]:
    """The top-level keys of a TOML file, unchecked (from_dict checks them).

    Raises:
        FileNotFoundError: no such file. ConfigError: not valid TOML or not flat.
    """
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the same parser, as a package
        import tomli as tomllib
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no config file at {path}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {err}") from err
    tables = [k for k, v in data.items() if isinstance(v, dict)]
    if tables:
        raise ConfigError(f"{path}: tables {tables} are not allowed; use top-level key = value")
    return data


# -- validation ----------------------------------------------------------------------
def _one_of(key: str, allowed: tuple[str, ...], optional: bool = False):
    def check(exp: Experiment) -> None:
        value = getattr(exp, key)
        if not (value is None and optional) and value not in allowed:
            none = " (or none)" if optional else ""
            raise ConfigError(f"{key}={value!r} is not one of: {', '.join(allowed)}{none}")

    return check


def _at_least(key: str, low: float, optional: bool = False, *, strict: bool = False):
    def check(exp: Experiment) -> None:
        value = getattr(exp, key)
        if value is None and optional:
            return
        ok = value is not None and math.isfinite(value)
        ok = ok and (value > low if strict else value >= low)
        if not ok:
            bound = f"> {low}" if strict else f">= {low}"
            raise ConfigError(f"{key}={value!r} is not valid: must be a finite number {bound}")

    return check


def _check_seed(exp: Experiment) -> None:
    if exp.seed is None:
        raise ConfigError(
            "seed is required: a run without a seed cannot be reproduced; pass seed=<int> "
            "(in a TOML file `seed = 0`, on the command line --set seed=0)"
        )
    if exp.seed < 0:
        raise ConfigError(f"seed={exp.seed!r} is not valid: must be an int >= 0")


def _check_shape(exp: Experiment) -> None:
    if exp.sizes is not None:
        if exp.model != "mlp":
            raise ConfigError(f"sizes is for model='mlp' only; got model={exp.model!r}")
        if len(exp.sizes) < 2 or min(exp.sizes) < 1:
            raise ConfigError(
                f"sizes={list(exp.sizes)!r} is not valid: need at least 2 layer sizes, "
                "each >= 1, e.g. 784,30,30,10"
            )
    if exp.model == "rnn" and exp.activation not in RNN_NONLINEARITIES:
        raise ConfigError(
            f"activation={exp.activation!r} is not valid for model='rnn': torch.nn.RNN "
            f"takes one of: {', '.join(RNN_NONLINEARITIES)}"
        )


def _check_bias_init(exp: Experiment) -> None:
    value = exp.bias_init
    if isinstance(value, str) and value not in BIAS_MODES:
        raise ConfigError(
            f"bias_init={value!r} is not one of: {', '.join(BIAS_MODES)}, a number, or none"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"bias_init={value!r} is not valid: a constant bias must be finite")


def _check_momentum(exp: Experiment) -> None:
    if not (math.isfinite(exp.momentum) and 0 <= exp.momentum < 1):
        raise ConfigError(f"momentum={exp.momentum!r} is not valid: must be in [0, 1)")


_CHECKS = (  # run in this order; the first that fails raises
    _check_seed,
    _one_of("dataset", DATASETS), _one_of("model", MODELS), _one_of("activation", ACTIVATIONS),
    _one_of("output_activation", ACTIVATIONS, optional=True),
    _one_of("norm", NORMS, optional=True), _one_of("init", INITIALISERS),
    _one_of("loss", LOSSES), _one_of("optimizer", OPTIMIZERS),
    _at_least("limit_train", 1, optional=True), _at_least("seq_len", 1, optional=True),
    _at_least("depth", 1), _at_least("width", 1), _check_shape,
    _at_least("gain", 0, optional=True, strict=True), _check_bias_init,
    _at_least("alpha", -math.inf, strict=True), _at_least("lr", 0, strict=True), _check_momentum,
    _at_least("l2", 0), _at_least("batch_size", 1), _at_least("epochs", 1),
    _at_least("steps", 1, optional=True), _at_least("every", 1), _at_least("detail_every", 1),
)  # fmt: skip
