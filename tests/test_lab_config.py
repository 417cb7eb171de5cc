"""Experiment: defaults with reasons, TOML and key=value parsing, clear errors, build()."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradprobe.lab import config
from gradprobe.lab.build import build, seed_streams
from gradprobe.lab.config import FIELDS, ConfigError, Experiment, coerce, parse_overrides

TINY = Experiment(seed=0, limit_train=100, depth=2, width=8, epochs=1, batch_size=20)


def test_every_field_has_a_reason_comment():
    source = inspect.getsource(Experiment)
    body = ast.parse(source).body[0].body
    lines = source.splitlines()
    fields = [node for node in body if isinstance(node, ast.AnnAssign)]
    assert [node.target.id for node in fields] == list(FIELDS)
    for node in fields:
        line = lines[node.lineno - 1]
        assert re.search(r"  # \w", line), f"field {node.target.id} has no reason: {line!r}"


def test_seed_is_required_and_recorded():
    with pytest.raises(ConfigError, match="seed is required"):
        Experiment()
    with pytest.raises(ConfigError, match="seed=-1"):
        Experiment(seed=-1)
    assert Experiment(seed=7).to_dict()["seed"] == 7


def test_overrides_parse_to_the_field_types():
    exp = TINY.with_overrides(
        [
            "depth=5",
            "lr=0.05",
            "sizes=64, 30,30,10",
            "gain=none",
            "bias_init=0.5",
            "name=run a",
            "momentum=0",
        ]
    )
    assert exp.depth == 5 and type(exp.depth) is int
    assert exp.lr == 0.05 and exp.sizes == (64, 30, 30, 10)
    assert exp.gain is None and exp.bias_init == 0.5 and exp.name == "run a"
    assert exp.momentum == 0.0 and type(exp.momentum) is float
    assert TINY.with_overrides(["bias_init=zeros"]).bias_init == "zeros"
    assert Experiment(**TINY.to_dict()) == TINY  # to_dict round-trips


def test_later_override_wins():
    assert parse_overrides(["depth=2", "depth=4"]) == {"depth": 4}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("dept=5", "unknown key 'dept'; valid keys: seed, name, dataset"),
        ("depth", "is not key=value"),
        ("activation=sigmod", "activation='sigmod' is not one of: sigmoid, tanh, relu"),
        ("init=glorot", "init='glorot' is not one of: nielsen"),
        ("dataset=cifar", "dataset='cifar' is not one of: circles, blobs, digits"),
        ("depth=0", "depth=0 is not valid: must be a finite number >= 1"),
        ("width=-3", "width=-3 is not valid"),
        ("depth=2.5", "depth='2.5' is not valid: expected int"),
        ("depth=true", "depth='true' is not valid: expected int"),
        ("lr=0", "lr=0.0 is not valid: must be a finite number > 0"),
        ("lr=nan", "lr=nan is not valid"),
        ("momentum=1", r"momentum=1.0 is not valid: must be in \[0, 1\)"),
        ("sizes=64,a,10", "sizes='a' is not valid: expected int"),
        ("sizes=64", "need at least 2 layer sizes"),
        ("bias_init=ones", "bias_init='ones' is not one of: zeros, normal"),
        ("norm=group", "norm='group' is not one of: batch, layer"),
        ("epochs=none", "epochs='none' is not valid: a value is required"),
    ],
)
def test_bad_overrides_name_the_field_value_and_allowed(override, message):
    with pytest.raises(ConfigError, match=message):
        TINY.with_overrides([override])


def test_rnn_needs_a_torch_nonlinearity():
    with pytest.raises(ConfigError, match="model='rnn'.*one of: tanh, relu"):
        Experiment(seed=0, model="rnn", activation="sigmoid")


def test_constructor_type_checks_too():
    assert Experiment(seed=0, depth="4", sizes=[64, 10]).depth == 4
    with pytest.raises(ConfigError, match="expected int, not a boolean"):
        Experiment(seed=0, depth=True)


@settings(max_examples=60, deadline=None)
@given(
    depth=st.integers(1, 10**6),
    lr=st.floats(1e-12, 1e6, allow_nan=False),
    sizes=st.lists(st.integers(1, 10**5), min_size=2, max_size=8),
    gain=st.none() | st.floats(1e-6, 1e3),
)
def test_printed_values_parse_back_exactly(depth, lr, sizes, gain):
    text = [f"depth={depth}", f"lr={lr!r}", f"sizes={','.join(map(str, sizes))}", f"gain={gain}"]
    exp = TINY.with_overrides(text)
    assert (exp.depth, exp.lr, exp.sizes, exp.gain) == (depth, lr, tuple(sizes), gain)


def _python_int(text: str) -> int | None:
    try:
        return int(text.strip(), 10)  # coerce ignores surrounding whitespace
    except ValueError:
        return None


@given(st.text(max_size=20) | st.from_regex(r"\s*[+-]?[\d_]{1,8}\s*", fullmatch=True))
def test_coerce_int_accepts_what_python_int_accepts(text):
    try:
        value = coerce("depth", text)
    except ConfigError:
        assert _python_int(text) is None
    else:
        assert value == _python_int(text)


def _toml(values: dict) -> str:
    def literal(v):
        if isinstance(v, str):
            return f'"{v}"'
        if isinstance(v, bool):
            return str(v).lower()
        return repr(list(v)) if isinstance(v, (list, tuple)) else repr(v)

    return "\n".join(f"{k} = {literal(v)}" for k, v in values.items() if v is not None)


def test_toml_round_trip_and_overrides(tmp_path):
    exp = dataclasses.replace(TINY, sizes=(64, 12, 10), lr=0.25, bias_init="normal", name="t")
    path = tmp_path / "exp.toml"
    path.write_text(_toml(exp.to_dict()))
    assert Experiment.from_toml(path) == exp
    assert Experiment.from_toml(path, ["lr=0.5"]).lr == 0.5


def test_toml_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config file at"):
        Experiment.from_toml(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("depth = = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Experiment.from_toml(bad)
    bad.write_text("seed = 0\n[model]\ndepth = 3")
    with pytest.raises(ConfigError, match=r"tables \['model'\] are not allowed"):
        Experiment.from_toml(bad)
    bad.write_text("seed = 0\ndepht = 3")
    with pytest.raises(ConfigError, match="unknown key 'depht'"):
        Experiment.from_toml(bad)
    bad.write_text('seed = 0\ndepth = "three"')
    with pytest.raises(ConfigError, match="depth='three' is not valid: expected int"):
        Experiment.from_toml(bad)


# -- build --------------------------------------------------------------------------
def test_batch_larger_than_the_training_set_is_refused_at_build():
    with pytest.raises(ConfigError, match=r"batch_size=101 is larger .* \(100 examples\)"):
        build(dataclasses.replace(TINY, batch_size=101))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"sizes": (784, 30, 10)}, "needs 64 inputs and 10 outputs, e.g. sizes=64,30,10"),
        ({"loss": "mse"}, "loss='mse' does not fit 'digits', a classification task"),
        ({"loss": "bce"}, "loss='bce' needs two classes; 'digits' has 10"),
        ({"seq_len": 10}, "seq_len=10 is for datasets adding, copy_memory"),
        ({"model": "lstm"}, "model='lstm' needs sequences"),
    ],
)
def test_build_errors(changes, message):
    with pytest.raises(ConfigError, match=message):
        build(dataclasses.replace(TINY, **changes))


def test_build_shapes_and_bce_single_output():
    setup = build(dataclasses.replace(TINY, sizes=(64, 12, 7, 10)))
    weights = [m.weight.shape for m in setup.model.modules() if isinstance(m, torch.nn.Linear)]
    assert weights == [(12, 64), (7, 12), (10, 7)]
    assert setup.dataset.x_train.shape == (100, 64)
    circles = build(dataclasses.replace(TINY, dataset="circles", loss="bce", width=4))
    assert circles.model(circles.dataset.x_test[:3]).shape == (3, 1)


def _weights(exp: Experiment) -> list[torch.Tensor]:
    return [p.detach().clone() for p in build(exp).model.parameters()]


def test_seed_streams_are_independent_and_reproducible():
    init_seed, data_seed = seed_streams(0)
    assert init_seed != data_seed and seed_streams(0) == (init_seed, data_seed)
    same = _weights(TINY), _weights(TINY)
    assert all(torch.equal(a, b) for a, b in zip(*same))
    other = _weights(dataclasses.replace(TINY, seed=1))
    assert not any(torch.equal(a, b) for a, b in zip(same[0], other))
    # the order of the data does not move the initial weights, nor the reverse
    rebatched = _weights(dataclasses.replace(TINY, batch_size=7))
    assert all(torch.equal(a, b) for a, b in zip(same[0], rebatched))
    first = build(TINY).data_generator.initial_seed()
    assert build(dataclasses.replace(TINY, init="he_normal")).data_generator.initial_seed() == first


def test_repr_is_useful():
    assert "seed=0" in repr(TINY)
    assert re.search(r"Setup\(mlp, \d+ parameters, Dataset\('digits'", repr(build(TINY)))
    assert config.MODELS == ("mlp", "residual_mlp", "rnn", "lstm", "gru")
