"""Probe lifecycle: hooks come and go cleanly, training is untouched, statuses, schedules."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch
import torch.nn.modules.module as module_globals
import torch.optim.optimizer as optimizer_globals
from torch import nn

import gradprobe as gp

# -- helpers ----------------------------------------------------------------------------


class Custom(nn.Module):
    """A parameter-owning module type gradprobe does not know."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


def mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))


def bn_model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3)
    )


def inplace_model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(6, 8),
        nn.ReLU(inplace=True),
        nn.Linear(8, 8),
        nn.ReLU(inplace=True),
        nn.Linear(8, 3),
    )


def custom_model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), Custom(8), nn.Tanh(), nn.Linear(8, 3))


def data(n_batches: int = 4, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(16, 6, generator=g), torch.randn(16, 3, generator=g)) for _ in range(n_batches)
    ]


BATCHES = data()


def train_step(model, opt, i, probe=None, log_after=False):
    x, y = BATCHES[i % len(BATCHES)]
    opt.zero_grad()
    loss = ((model(x) - y) ** 2).mean()
    loss.backward()
    if probe is not None and not log_after:
        probe.log_loss(loss)
    opt.step()
    if probe is not None and log_after:
        probe.log_loss(loss)
    return loss.item()


def _hook_dicts(prefix: tuple, obj) -> dict:
    """Keys of every hook dict (and hook flag) held in vars(obj)."""
    return {
        (*prefix, attr): list(value) if isinstance(value, dict) else value
        for attr, value in vars(obj).items()
        if "hook" in attr
    }


def hook_snapshot(model: nn.Module, opt: torch.optim.Optimizer | None) -> dict:
    """Keys of every hook dict of every module, parameter, the optimizer and the globals."""
    snap = {}
    for name, module in model.named_modules():
        snap.update(_hook_dicts(("module", name), module))
    for name, p in model.named_parameters():
        snap[("param", name, "_backward_hooks")] = list(p._backward_hooks or {})
        snap[("param", name, "post")] = list(getattr(p, "_post_accumulate_grad_hooks", None) or {})
    if opt is not None:
        snap.update(_hook_dicts(("opt",), opt))
    snap.update(_hook_dicts(("global",), module_globals))
    snap[("global", "opt_pre")] = list(optimizer_globals._global_optimizer_pre_hooks)
    snap[("global", "opt_post")] = list(optimizer_globals._global_optimizer_post_hooks)
    return snap


def hooks_attached(model: nn.Module, opt: torch.optim.Optimizer | None) -> int:
    n = sum(len(m._forward_hooks) for m in model.modules())
    if opt is not None:
        n += len(opt._optimizer_step_pre_hooks) + len(opt._optimizer_step_post_hooks)
    return n


# -- hooks ------------------------------------------------------------------------------


def test_close_removes_every_hook():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    before = hook_snapshot(model, opt)
    probe = gp.watch(model, opt)
    # the probe did attach: 3 layers, the root, and 2 optimizer hooks; the 2 activations
    # sit between layers in a plain Sequential: the next layer's hook reads them
    assert hooks_attached(model, opt) == 3 + 1 + 2
    for i in range(3):
        train_step(model, opt, i, probe)
    probe.close()
    assert hook_snapshot(model, opt) == before
    probe.close()  # a second close is a no-op
    assert hook_snapshot(model, opt) == before


def test_with_block_removes_every_hook():
    model = bn_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = hook_snapshot(model, opt)
    with gp.watch(model, opt) as probe:
        assert hook_snapshot(model, opt) != before
        for i in range(3):
            train_step(model, opt, i, probe)
    assert probe.closed
    assert hook_snapshot(model, opt) == before


def test_exception_in_with_block_removes_every_hook():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    before = hook_snapshot(model, opt)
    with pytest.raises(RuntimeError, match="loop broke"), gp.watch(model, opt) as probe:
        train_step(model, opt, 0, probe)
        model(BATCHES[0][0])  # a forward in flight when the loop fails
        raise RuntimeError("loop broke")
    assert hook_snapshot(model, opt) == before


def test_keyboard_interrupt_in_with_block_removes_every_hook():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    before = hook_snapshot(model, opt)
    with pytest.raises(KeyboardInterrupt), gp.watch(model, opt) as probe:
        train_step(model, opt, 0, probe)
        raise KeyboardInterrupt
    assert hook_snapshot(model, opt) == before


@pytest.mark.parametrize("run_dir", [False, True])
def test_failure_inside_watch_leaves_no_hook(tmp_path, run_dir):
    model = custom_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    before = hook_snapshot(model, opt)
    kwargs = {"run_dir": tmp_path / "run"} if run_dir else {}
    with pytest.raises(TypeError, match="Custom"):
        gp.watch(model, opt, unknown="error", **kwargs)
    assert hook_snapshot(model, opt) == before
    # and the model still trains as before, with no probe to be found in it
    train_step(model, opt, 0)
    assert hook_snapshot(model, opt) == before


def test_unknown_modes_choose_the_layers():
    model = custom_model()
    with gp.watch(model, unknown="hook") as probe:
        assert probe.layers == ["0", "1", "3"]
    with gp.watch(model, unknown="skip") as probe:
        assert probe.layers == ["0", "3"]


# -- the model is left as it was ----------------------------------------------------------


def test_train_eval_modes_unchanged():
    model = bn_model()
    pattern = {"": True, "0": False, "1": False, "2": True, "3": False, "4": True, "5": False}
    for name, module in model.named_modules():
        module.training = pattern[name]  # module.train() would recurse
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with gp.watch(model, opt) as probe:
        assert {n: m.training for n, m in model.named_modules()} == pattern
        for i in range(3):
            train_step(model, opt, i, probe)
        assert {n: m.training for n, m in model.named_modules()} == pattern
    assert {n: m.training for n, m in model.named_modules()} == pattern


def test_nothing_written_onto_modules_or_parameters():
    model = bn_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    module_keys = {n: sorted(vars(m)) for n, m in model.named_modules()}
    module_dicts = {
        n: {
            k: sorted(v) for k, v in vars(m).items() if k in ("_parameters", "_buffers", "_modules")
        }
        for n, m in model.named_modules()
    }
    param_keys = {n: sorted(vars(p)) for n, p in model.named_parameters()}
    with gp.watch(model, opt, delta="hook") as probe:
        for i in range(4):
            train_step(model, opt, i, probe)
        assert {n: sorted(vars(m)) for n, m in model.named_modules()} == module_keys
        assert {n: sorted(vars(p)) for n, p in model.named_parameters()} == param_keys
    assert {n: sorted(vars(m)) for n, m in model.named_modules()} == module_keys
    assert {
        n: {
            k: sorted(v) for k, v in vars(m).items() if k in ("_parameters", "_buffers", "_modules")
        }
        for n, m in model.named_modules()
    } == module_dicts
    assert {n: sorted(vars(p)) for n, p in model.named_parameters()} == param_keys
    assert all(not hasattr(p, "_gradprobe") for p in model.parameters())


# -- bit-identical training -----------------------------------------------------------------


def _train(model_fn, opt_name: str, watch_kwargs: dict | None, steps: int = 20):
    model = model_fn()
    if opt_name == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    probe = gp.watch(model, opt, **watch_kwargs) if watch_kwargs is not None else None
    try:
        for i in range(steps):
            train_step(model, opt, i, probe)
    finally:
        if probe is not None:
            probe.close()
    rec = probe.record() if probe is not None else None
    return model.state_dict(), opt.state_dict(), rec


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
@pytest.mark.parametrize("model_fn", [mlp, bn_model, inplace_model], ids=["mlp", "bn", "inplace"])
@pytest.mark.parametrize(
    "watch_kwargs",
    [{}, {"every": 3}, {"delta": "hook"}, {"detail_every": 1}],
    ids=["every1", "every3", "hook", "detail1"],
)
def test_training_is_bit_identical(model_fn, opt_name, watch_kwargs):
    plain_state, plain_opt, _ = _train(model_fn, opt_name, None)
    probed_state, probed_opt, rec = _train(model_fn, opt_name, watch_kwargs)
    assert len(rec.steps) == (7 if watch_kwargs.get("every") == 3 else 20)  # it did record
    assert plain_state.keys() == probed_state.keys()
    for key in plain_state:  # weights and BatchNorm running stats / batch counts
        assert torch.equal(plain_state[key], probed_state[key]), key
    for pid, state in plain_opt["state"].items():
        for key, value in state.items():
            assert torch.equal(
                torch.as_tensor(value), torch.as_tensor(probed_opt["state"][pid][key])
            )
    if model_fn is bn_model:
        assert plain_state["1.num_batches_tracked"].item() == 20


# -- status -------------------------------------------------------------------------------


@pytest.mark.parametrize("use_dir", [False, True])
def test_value_error_in_with_block_is_failed(tmp_path, use_dir):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    kwargs = {"run_dir": tmp_path / "run"} if use_dir else {}
    with pytest.raises(ValueError, match="bad batch 3"), gp.watch(model, opt, **kwargs) as probe:
        for i in range(5):
            if i == 3:
                raise ValueError("bad batch 3")
            train_step(model, opt, i, probe)
    rec = gp.load(tmp_path / "run") if use_dir else probe.record()
    assert rec.status == "failed"
    assert rec.meta["error"] == "ValueError: bad batch 3"
    np.testing.assert_array_equal(rec.steps, [0, 1, 2])


@pytest.mark.parametrize("use_dir", [False, True])
def test_keyboard_interrupt_in_with_block_is_interrupted(tmp_path, use_dir):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    kwargs = {"run_dir": tmp_path / "run"} if use_dir else {}
    losses = []
    with pytest.raises(KeyboardInterrupt), gp.watch(model, opt, flush_every=100, **kwargs) as p:
        for i in range(10):
            if i == 6:
                model(BATCHES[0][0]).sum().backward()  # interrupted mid-step
                raise KeyboardInterrupt
            losses.append(train_step(model, opt, i, p))
    rec = gp.load(tmp_path / "run") if use_dir else p.record()
    assert rec.status == "interrupted"
    assert rec.meta["error"] == "KeyboardInterrupt"
    np.testing.assert_array_equal(rec.steps, np.arange(6))
    np.testing.assert_array_equal(rec.loss, np.array(losses))
    assert np.isfinite(rec["grad_norm"]).all()


@pytest.mark.parametrize("use_dir", [False, True])
def test_normal_exit_is_done(tmp_path, use_dir):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    kwargs = {"run_dir": tmp_path / "run"} if use_dir else {}
    with gp.watch(model, opt, **kwargs) as probe:
        for i in range(4):
            train_step(model, opt, i, probe)
    rec = gp.load(tmp_path / "run") if use_dir else probe.record()
    assert rec.status == "done"
    assert rec.meta["error"] is None
    np.testing.assert_array_equal(rec.steps, np.arange(4))


def _exit(code):
    def leave():
        sys.exit(code)

    return leave


def _raise_exit(code):
    def leave():
        raise SystemExit(code)

    return leave


@pytest.mark.parametrize("use_dir", [False, True])
@pytest.mark.parametrize(
    ("leave", "status", "error"),
    [
        (_exit(0), "done", None),
        (sys.exit, "done", None),
        (_raise_exit(None), "done", None),
        (_exit(1), "failed", "SystemExit: 1"),
        (_exit("bad config"), "failed", "SystemExit: bad config"),
    ],
    ids=["sys.exit(0)", "sys.exit()", "SystemExit(None)", "sys.exit(1)", "sys.exit(str)"],
)
def test_system_exit_in_with_block(tmp_path, use_dir, leave, status, error):
    """Leaving the program with status 0 ends the run done; any other status is a failure."""
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    before = hook_snapshot(model, opt)
    kwargs = {"run_dir": tmp_path / "run"} if use_dir else {}
    losses = []
    with pytest.raises(SystemExit), gp.watch(model, opt, **kwargs) as probe:
        for i in range(5):
            if i == 3:
                leave()
            losses.append(train_step(model, opt, i, probe))
    assert probe.closed
    assert hook_snapshot(model, opt) == before
    rec = gp.load(tmp_path / "run") if use_dir else probe.record()
    assert rec.status == status
    assert rec.meta["error"] == error
    np.testing.assert_array_equal(rec.steps, [0, 1, 2])
    np.testing.assert_array_equal(rec.loss, losses)


@pytest.mark.parametrize("use_dir", [False, True])
@pytest.mark.parametrize(
    ("exc", "status", "error"),
    [
        (ValueError("nan batch"), "failed", "ValueError: nan batch"),
        (KeyboardInterrupt(), "interrupted", "KeyboardInterrupt"),
        (SystemExit(0), "done", None),
        (SystemExit(None), "done", None),
        (SystemExit(2), "failed", "SystemExit: 2"),
    ],
    ids=["failed", "interrupted", "exit0", "exit-none", "exit2"],
)
def test_close_in_finally_follows_the_exception(tmp_path, use_dir, exc, status, error):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    kwargs = {"run_dir": tmp_path / "run"} if use_dir else {}
    probe = gp.watch(model, opt, **kwargs)
    with pytest.raises(type(exc)):
        try:
            for i in range(3):
                train_step(model, opt, i, probe)
            raise exc
        finally:
            probe.close()
    rec = gp.load(tmp_path / "run") if use_dir else probe.record()
    assert rec.status == status
    assert rec.meta["error"] == error
    np.testing.assert_array_equal(rec.steps, np.arange(3))


def test_close_in_finally_without_exception_is_done():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    probe = gp.watch(model, opt)
    try:
        train_step(model, opt, 0, probe)
    finally:
        probe.close()
    assert probe.record().status == "done"


# -- step() and calls after close -----------------------------------------------------------


def test_step_with_optimizer_raises():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with gp.watch(model, opt) as probe:
        train_step(model, opt, 0, probe)
        with pytest.raises(RuntimeError, match=r"optimizer\.step\(\)"):
            probe.step()
        assert probe.step_count == 1  # the bad call ended no step
        train_step(model, opt, 1, probe)
    np.testing.assert_array_equal(probe.record().steps, [0, 1])


def test_calls_after_close_raise():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    probe = gp.watch(model)
    x, y = BATCHES[0]
    loss = ((model(x) - y) ** 2).mean()
    loss.backward()
    opt.step()
    probe.step()
    probe.close()
    with pytest.raises(RuntimeError, match="closed"):
        probe.step()
    with pytest.raises(RuntimeError, match="closed"):
        probe.log_loss(loss)
    # training on after close records nothing more
    train_step(model, opt, 1)
    np.testing.assert_array_equal(probe.record().steps, [0])


def test_step_without_optimizer_records_weight_change():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    w0 = model[2].weight.detach().clone()
    with gp.watch(model, detail_every=1) as probe:
        for i in range(2):
            x, y = BATCHES[i]
            opt.zero_grad()
            ((model(x) - y) ** 2).mean().backward()
            if i == 1:
                w0 = model[2].weight.detach().clone()
            opt.step()
            probe.step()
    rec = probe.record()
    expected = (model[2].weight.detach() - w0).double().norm().item()
    assert rec["update_norm"][1, rec.layers.index("2")] == pytest.approx(expected, rel=1e-6)


# -- schedules ------------------------------------------------------------------------------


def _record_with(every, steps: int, with_opt: bool = True, detail_every=10):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    probe = gp.watch(model, opt if with_opt else None, every=every, detail_every=detail_every)
    for i in range(steps):
        x, y = BATCHES[i % len(BATCHES)]
        opt.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        opt.step()
        if not with_opt:
            probe.step()
    probe.close()
    return probe.record()


@pytest.mark.parametrize("with_opt", [True, False])
def test_every_n(with_opt):
    rec = _record_with(3, 10, with_opt, detail_every=1)
    np.testing.assert_array_equal(rec.steps, [0, 3, 6, 9])
    assert np.isfinite(rec["grad_norm"]).all()
    assert np.isfinite(rec["update_norm"]).all()


def test_detail_every_counts_recorded_steps():
    # every=2 records steps 0, 2, 4, 6, 8; detail_every=2 takes every 2nd of those (a
    # schedule on step numbers would take them all)
    rec = _record_with(2, 9, detail_every=2)
    np.testing.assert_array_equal(rec.steps, [0, 2, 4, 6, 8])
    detailed = np.isfinite(rec["weight_norm"]).all(axis=1)
    np.testing.assert_array_equal(detailed, [True, False, True, False, True])
    assert np.isfinite(rec["grad_norm"]).all()


def test_every_callable():
    seen = []

    def every(step: int) -> bool:
        seen.append(step)
        return step in (1, 4, 5)

    rec = _record_with(every, 8)
    np.testing.assert_array_equal(rec.steps, [1, 4, 5])
    assert set(range(8)) <= set(seen)


def test_every_log():
    rec = _record_with("log", 25)
    np.testing.assert_array_equal(rec.steps, [*range(10), 10, 20])


def test_every_n_update_norm_is_one_steps_change():
    """With every=3, the update of step 3 is W_3 - W_2, not W_3 - W_0."""
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    expected = {}
    with gp.watch(model, opt, every=3, detail_every=1) as probe:
        for i in range(7):
            before = model[4].weight.detach().clone()
            train_step(model, opt, i, probe)
            expected[i] = (model[4].weight.detach() - before).double().norm().item()
    rec = probe.record()
    col = rec.layers.index("4")
    got = dict(zip(rec.steps.tolist(), rec["update_norm"][:, col].tolist()))
    assert got == pytest.approx({s: expected[s] for s in (0, 3, 6)}, rel=1e-6)


DETAIL_ONLY = (
    "grad_abs_mean",
    "grad_abs_max",
    "weight_norm",
    "update_norm",
    "update_ratio",
    "weight_change_mean",
    "saturated_frac",
    "dead_frac",
    "abs_min_nonzero",
)
EVERY_STEP = ("grad_norm", "bias_grad_norm", "delta_norm", "act_mean", "act_std")
# layers of mlp() a detail quantity applies to: Tanh after "0", ReLU after "2"
APPLIES = {"saturated_frac": ["0"], "dead_frac": ["2"]}


@pytest.mark.parametrize("with_opt", [True, False], ids=["optimizer", "probe.step"])
def test_detail_every_tiers(with_opt):
    """detail_every=3: detail quantities at steps 0, 3, 6 only, the cheap ones at every step,
    the counts 0 everywhere (finite sums prove it), and the update of step 3 is one step's
    change W_3 - W_2 although steps 1 and 2 took no snapshot of the weights."""
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    weights = lambda: [model[j].weight.detach().double().clone() for j in (0, 2, 4)]  # noqa: E731
    history = [weights()]  # W_{-1}, W_0, ..., W_6
    with gp.watch(model, opt if with_opt else None, every=1, detail_every=3) as probe:
        for i in range(7):
            x, y = BATCHES[i % len(BATCHES)]
            opt.zero_grad()
            loss = ((model(x) - y) ** 2).mean()
            loss.backward()
            probe.log_loss(loss)
            opt.step()
            if not with_opt:
                probe.step()
            history.append(weights())
    rec = probe.record()
    np.testing.assert_array_equal(rec.steps, np.arange(7))
    assert rec.layers == ["0", "2", "4"]
    detail = np.isin(rec.steps, [0, 3, 6])
    for q in DETAIL_ONLY:
        cols = [rec.layers.index(name) for name in APPLIES.get(q, rec.layers)]
        assert np.isfinite(rec[q][np.ix_(detail, cols)]).all(), q
        assert np.isnan(rec[q][~detail]).all(), q
    for q in EVERY_STEP:
        assert np.isfinite(rec[q]).all(), q
    assert np.isfinite(rec.global_grad_norm).all()
    assert np.isfinite(rec.loss).all()
    for q in ("grad_nonfinite", "act_nonfinite"):
        np.testing.assert_array_equal(rec[q], 0, err_msg=q)
    # oracle: the weights themselves, before and after each step
    for step in (0, 3, 6):
        before, after = history[step], history[step + 1]
        for col in range(3):
            expected = (after[col] - before[col]).norm().item()
            assert rec["update_norm"][step, col] == pytest.approx(expected, rel=1e-6), step
            norm = after[col].norm().item()
            assert rec["weight_norm"][step, col] == pytest.approx(norm, rel=1e-6), step
    # with momentum the steps differ: a two- or three-step change would not match
    w2, w3 = history[3][2], history[4][2]
    assert (w3 - history[1][2]).norm().item() > 1.5 * (w3 - w2).norm().item()


# -- loss -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("log_after", "every"),
    [
        (False, 1),
        (True, 1),
        (True, 2),
        (False, 2),  # the loss of an unrecorded step is dropped, not added to step 0
    ],
)
def test_log_loss_before_or_after_step(log_after, every):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    losses = []
    with gp.watch(model, opt, every=every, flush_every=3) as probe:
        for i in range(8):
            losses.append(train_step(model, opt, i, probe, log_after=log_after))
    rec = probe.record()
    np.testing.assert_array_equal(rec.steps, np.arange(0, 8, every))
    # float32 loss -> float64 exactly; the same value whichever side of opt.step()
    np.testing.assert_array_equal(rec.loss, np.array(losses)[::every])


def test_log_loss_float_and_tensor_agree():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with gp.watch(model, opt) as probe:
        x, y = BATCHES[0]
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        probe.log_loss(loss.item())
        losses = [loss.item(), train_step(model, opt, 1, probe)]
    np.testing.assert_array_equal(probe.record().loss, losses)


def test_log_loss_gradient_accumulation_is_mean():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    expected = []
    with gp.watch(model, opt) as probe:
        for i in range(4):
            opt.zero_grad()
            micro = []
            for j in range(2):
                x, y = BATCHES[(2 * i + j) % len(BATCHES)]
                loss = ((model(x) - y) ** 2).mean() / 2
                loss.backward()
                probe.log_loss(loss)
                micro.append(loss.double().item())
            opt.step()
            expected.append((micro[0] + micro[1]) / 2)
    rec = probe.record()
    np.testing.assert_allclose(rec.loss, expected, rtol=1e-15)
    assert not np.allclose(np.diff(rec.loss), 0)


def test_unlogged_loss_is_nan():
    rec = _record_with(1, 3)
    assert np.isnan(rec.loss).all()


# -- reading while writing, resume, overwrite -----------------------------------------------


def test_read_while_writing(tmp_path):
    run = tmp_path / "run"
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    probe = gp.watch(model, opt, run_dir=run, flush_every=5, flush_secs=1e9, detail_every=1)
    losses = [train_step(model, opt, i, probe) for i in range(12)]
    mid = gp.load(run)
    assert mid.status == "running"
    np.testing.assert_array_equal(mid.steps, np.arange(10))
    np.testing.assert_array_equal(mid.loss, losses[:10])
    assert mid.layers == ["0", "2", "4"]
    probe.close()
    final = gp.load(run)
    assert final.status == "done"
    np.testing.assert_array_equal(final.steps, np.arange(12))
    assert np.isfinite(mid["update_norm"]).all()
    for q in ("grad_norm", "delta_norm", "act_mean", "update_norm"):
        np.testing.assert_array_equal(final[q][:10], mid[q])


def _run_steps(run, n, seed=0, **kwargs):
    model = mlp(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with gp.watch(model, opt, run_dir=run, **kwargs) as probe:
        first = probe.step_count
        losses = [train_step(model, opt, i, probe) for i in range(n)]
    return first, losses


def test_resume_continues_step_count(tmp_path):
    run = tmp_path / "run"
    first, losses_a = _run_steps(run, 5)
    assert first == 0
    a = gp.load(run)
    first, losses_b = _run_steps(run, 3, seed=1, resume=True)
    assert first == 5
    b = gp.load(run)
    assert b.status == "done"
    np.testing.assert_array_equal(b.steps, np.arange(8))
    np.testing.assert_array_equal(b.loss, losses_a + losses_b)
    np.testing.assert_array_equal(b["grad_norm"][:5], a["grad_norm"])
    assert b.meta["n_steps"] == 8


def test_resume_after_sparse_schedule(tmp_path):
    run = tmp_path / "run"
    _run_steps(run, 6, every=2)  # stored 0, 2, 4
    first, _ = _run_steps(run, 2, resume=True)
    assert first == 5
    np.testing.assert_array_equal(gp.load(run).steps, [0, 2, 4, 5, 6])


def test_overwrite_replaces(tmp_path):
    run = tmp_path / "run"
    _run_steps(run, 5)
    (tmp_path / "run" / "notes.txt").write_text("mine")
    first, losses = _run_steps(run, 3, seed=2, overwrite=True)
    assert first == 0
    rec = gp.load(run)
    assert rec.status == "done"
    np.testing.assert_array_equal(rec.steps, np.arange(3))
    np.testing.assert_array_equal(rec.loss, losses)
    assert rec.meta["n_steps"] == 3
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"


def test_memory_record_matches_run_dir(tmp_path):
    model_a, model_b = mlp(), mlp()
    opt_a = torch.optim.SGD(model_a.parameters(), lr=0.05)
    opt_b = torch.optim.SGD(model_b.parameters(), lr=0.05)
    pa = gp.watch(model_a, opt_a)
    pb = gp.watch(model_b, opt_b, run_dir=tmp_path / "run", flush_every=2)
    for i in range(5):
        train_step(model_a, opt_a, i, pa)
        train_step(model_b, opt_b, i, pb)
    pa.close()
    pb.close()
    a, b = pa.record(), gp.load(tmp_path / "run")
    assert a.layers == b.layers
    for q in a.quantities:
        np.testing.assert_array_equal(a[q], b[q], err_msg=q)
    assert math.isfinite(a["weight_norm"][0, 0])


def test_run_json_records_device_layers_and_seed(tmp_path):
    torch.manual_seed(1234)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with gp.watch(model, run_dir=tmp_path / "run"):
        pass
    meta = gp.load(tmp_path / "run").meta
    assert meta["torch_seed"] == 1234
    assert meta["device"] == "cpu"
    assert meta["layers"] == ["0", "2"]
    assert meta["status"] == "done"
