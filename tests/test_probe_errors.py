"""Bad input to watch() and log_loss(): the right exception, a message that names the bad
value and what is allowed, no hook left behind, no run directory created."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

import gradprobe as gp
from gradprobe.record import RunExistsError


class Custom(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain


def make_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), Custom(), nn.Linear(4, 2))


def hook_keys(model: nn.Module, opt: torch.optim.Optimizer | None = None) -> list:
    keys = []
    for name, m in model.named_modules():
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks"):
            keys.append((name, attr, list(getattr(m, attr))))
        keys.append((name, "_backward_pre_hooks", list(m._backward_pre_hooks)))
    for name, p in model.named_parameters():
        keys.append((name, "param", list(p._backward_hooks or {}), sorted(vars(p))))
    if opt is not None:
        keys.append(("opt", list(opt._optimizer_step_pre_hooks)))
        keys.append(("opt", list(opt._optimizer_step_post_hooks)))
    return keys


def train(model, opt, probe, steps=2):
    x, y = torch.randn(8, 3), torch.randn(8, 2)
    for _ in range(steps):
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        probe.log_loss(loss)


def other_params_optimizer(model):
    return torch.optim.SGD(nn.Linear(3, 4).parameters(), lr=0.1)


def not_an_optimizer(model):
    return list(model.parameters())


def adam_like_object(model):
    class FakeOpt:
        param_groups = [{"params": list(model.parameters())}]

        def step(self):
            pass

    return FakeOpt()


# (id, what to watch, watch kwargs, make the optimizer, exception, patterns the message must match)
BAD_CALLS = [
    ("list", [nn.Linear(2, 2)], {}, None, TypeError, ["torch.nn.Module", "list"]),
    ("function", lambda x: x, {}, None, TypeError, ["torch.nn.Module", "function"]),
    ("no params", nn.ReLU(), {}, None, ValueError, ["ReLU", "no parameters"]),
    ("every=0", None, {"every": 0}, None, ValueError, ["every=0", "positive int", "log"]),
    ("every=-1", None, {"every": -1}, None, ValueError, ["every=-1", "positive int", "callable"]),
    ("every=weekly", None, {"every": "weekly"}, None, ValueError, ["'weekly'", "log"]),
    ("every=True", None, {"every": True}, None, TypeError, ["every=True", "positive int"]),
    ("every=1.5", None, {"every": 1.5}, None, TypeError, ["every=1.5", "positive int"]),
    ("delta", None, {"delta": "x"}, None, ValueError, ["delta='x'", "auto", "hook"]),
    ("unknown", None, {"unknown": "x"}, None, ValueError, ["unknown='x'", "hook", "skip", "error"]),
    ("unknown=error", None, {"unknown": "error"}, None, TypeError, ["Custom", "'hook'", "'skip'"]),
    ("flush_every=0", None, {"flush_every": 0}, None, ValueError, ["flush_every=0", "positive"]),
    ("flush_every=2.0", None, {"flush_every": 2.0}, None, ValueError, ["flush_every=2.0"]),
    ("flush_secs=0", None, {"flush_secs": 0}, None, ValueError, ["flush_secs=0", "positive"]),
    ("flush_secs=-1.5", None, {"flush_secs": -1.5}, None, ValueError, ["flush_secs=-1.5"]),
    ("flush_secs='10'", None, {"flush_secs": "10"}, None, ValueError, ["flush_secs='10'"]),
    ("flush_secs=None", None, {"flush_secs": None}, None, ValueError, ["flush_secs=None"]),
    ("detail_every=0", None, {"detail_every": 0}, None, ValueError, ["detail_every=0", "log"]),
    ("detail_every=x", None, {"detail_every": "x"}, None, ValueError, ["detail_every='x'"]),
    ("detail_every=True", None, {"detail_every": True}, None, TypeError, ["detail_every=True"]),
    ("detail_every=0.5", None, {"detail_every": 0.5}, None, TypeError, ["detail_every=0.5"]),
    ("opt list", None, {}, not_an_optimizer, TypeError, ["torch.optim.Optimizer", "list"]),
    ("opt duck", None, {}, adam_like_object, TypeError, ["torch.optim.Optimizer", "FakeOpt"]),
    ("opt other", None, {}, other_params_optimizer, ValueError, ["none of the model's param"]),
]


def _watch_target(target):
    return make_model() if target is None else target


@pytest.mark.parametrize(
    ("target", "kwargs", "make_opt", "exc", "patterns"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_CALLS],
)
def test_bad_call_raises_clear_error_and_leaves_no_hook(target, kwargs, make_opt, exc, patterns):
    model = _watch_target(target)
    opt = make_opt(model) if make_opt else None
    is_module = isinstance(model, nn.Module)
    real_opt = opt if isinstance(opt, torch.optim.Optimizer) else None
    before = hook_keys(model, real_opt) if is_module else None
    with pytest.raises(exc) as info:
        gp.watch(model, opt, **kwargs)
    message = str(info.value)
    for pattern in patterns:
        assert pattern in message, (pattern, message)
    if is_module:
        assert hook_keys(model, real_opt) == before


@pytest.mark.parametrize(
    ("target", "kwargs", "make_opt", "exc"),
    [pytest.param(*case[1:5], id=case[0]) for case in BAD_CALLS],
)
def test_bad_call_creates_no_run_dir(tmp_path, target, kwargs, make_opt, exc):
    model = _watch_target(target)
    opt = make_opt(model) if make_opt else None
    run = tmp_path / "runs" / "exp"
    with pytest.raises(exc):
        gp.watch(model, opt, run_dir=run, **kwargs)
    assert not run.exists()
    assert not (tmp_path / "runs").exists()


def test_good_call_after_a_bad_one_on_the_same_run_dir(tmp_path):
    """The user fixes a typo and tries again: that must just work."""
    model = make_model()
    run = tmp_path / "run"
    with pytest.raises(ValueError):
        gp.watch(model, run_dir=run, every=0)
    assert not run.exists()
    probe = gp.watch(model, run_dir=run, every=1)  # used to raise RunExistsError
    probe.close()
    assert gp.load(run).status == "done"


def test_flush_secs_nan_is_rejected():
    model = make_model()
    before = hook_keys(model)
    with pytest.raises(ValueError, match="flush_secs=nan"):
        gp.watch(model, flush_secs=float("nan")).close()
    assert hook_keys(model) == before


# -- run directory ----------------------------------------------------------------------------


def test_run_dir_under_a_file(tmp_path):
    (tmp_path / "f.txt").write_text("x")
    run = tmp_path / "f.txt" / "run"
    model = make_model()
    before = hook_keys(model)
    with pytest.raises(NotADirectoryError) as info:
        gp.watch(model, run_dir=run)
    assert str(run) in str(info.value)
    assert "cannot create run directory" in str(info.value)
    assert hook_keys(model) == before
    assert (tmp_path / "f.txt").read_text() == "x"


def test_run_dir_is_a_file(tmp_path):
    run = tmp_path / "run"
    run.write_text("x")
    model = make_model()
    with pytest.raises(NotADirectoryError, match=re.escape(str(run))):
        gp.watch(model, run_dir=run)
    assert run.read_text() == "x"


def _finished_run(run) -> bytes:
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gp.watch(model, opt, run_dir=run) as probe:
        train(model, opt, probe, steps=3)
    return (run / "run.json").read_bytes()


def test_existing_run_needs_overwrite_or_resume(tmp_path):
    run = tmp_path / "run"
    run_json = _finished_run(run)
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = hook_keys(model, opt)
    with pytest.raises(RunExistsError) as info:
        gp.watch(model, opt, run_dir=run)
    message = str(info.value)
    assert str(run) in message
    assert "overwrite=True" in message
    assert "resume=True" in message
    assert "'done'" in message and "3 steps" in message
    assert isinstance(info.value, FileExistsError)
    assert hook_keys(model, opt) == before
    assert (run / "run.json").read_bytes() == run_json  # untouched
    np.testing.assert_array_equal(gp.load(run).steps, [0, 1, 2])


def test_bad_resume_call_leaves_finished_run_alone(tmp_path):
    """A typo in a resume call must not mark the finished run as failed."""
    run = tmp_path / "run"
    run_json = _finished_run(run)
    with pytest.raises(ValueError, match="every=0"):
        gp.watch(make_model(), run_dir=run, resume=True, every=0)
    rec = gp.load(run)
    np.testing.assert_array_equal(rec.steps, [0, 1, 2])
    assert rec.status == "done"  # not "failed", error "ValueError: every=0 ..."
    assert rec.meta["error"] is None
    assert (run / "run.json").read_bytes() == run_json


@pytest.mark.parametrize("use_dir", [True, False])
def test_overwrite_and_resume_together(tmp_path, use_dir):
    model = make_model()
    before = hook_keys(model)
    run = tmp_path / "run"
    with pytest.raises(ValueError) as info:
        gp.watch(model, run_dir=run if use_dir else None, overwrite=True, resume=True)
    assert "overwrite" in str(info.value) and "resume" in str(info.value)
    assert hook_keys(model) == before
    assert not run.exists()


@pytest.mark.parametrize("flag", ["overwrite", "resume"])
def test_overwrite_or_resume_without_run_dir(flag):
    model = make_model()
    with pytest.raises(ValueError, match=f"{flag}="):
        gp.watch(model, **{flag: True})
    assert hook_keys(model) == hook_keys(make_model())


def test_overwrite_and_resume_together_keep_existing_run(tmp_path):
    run = tmp_path / "run"
    run_json = _finished_run(run)
    with pytest.raises(ValueError, match="not both"):
        gp.watch(make_model(), run_dir=run, overwrite=True, resume=True)
    assert (run / "run.json").read_bytes() == run_json
    np.testing.assert_array_equal(gp.load(run).steps, [0, 1, 2])


# -- log_loss --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "exc", "patterns"),
    [
        (torch.ones(3), ValueError, ["scalar", "(3,)"]),
        (torch.ones(2, 2), ValueError, ["scalar", "(2, 2)"]),
        ("0.5", TypeError, ["tensor or a number", "str"]),
        (None, TypeError, ["tensor or a number", "NoneType"]),
    ],
    ids=["vector", "matrix", "string", "none"],
)
def test_log_loss_bad_value(bad, exc, patterns):
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 3), torch.randn(8, 2)
    with gp.watch(model, opt) as probe:
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        with pytest.raises(exc) as info:
            probe.log_loss(bad)
        for pattern in patterns:
            assert pattern in str(info.value), (pattern, str(info.value))
        probe.log_loss(loss)
        opt.step()
    # the bad call added nothing: the step's loss is the one good value
    np.testing.assert_array_equal(probe.record().loss, [loss.item()])


def test_log_loss_one_element_tensor_is_accepted():
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gp.watch(model, opt) as probe:
        opt.zero_grad()
        model(torch.randn(8, 3)).sum().backward()
        probe.log_loss(torch.tensor([[2.5]]))
        opt.step()
    np.testing.assert_array_equal(probe.record().loss, [2.5])
