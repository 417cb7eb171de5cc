"""Loss scaling: watch(scaler=...) records what an unscaled loop records, skipped steps dropped.

The oracle is the same loop run without loss scaling (a disabled GradScaler), on the
same batches. The scaled loop (a CPU GradScaler from 2**16, growing every 2 steps, so
the scale changes between steps) backpropagates scale x loss: the hooked output gradient
of a Linear without bias and the LSTM's delta_norm_t are divided back by the probe, on
the device. Its step 2 overflows (the loss times inf): the scaler skips it, and the
record of every later step equals that of the unscaled loop that never ran batch 2.
Scaling by powers of two is exact in float32, so the two runs train the same weights.
Under DDP (two gloo ranks, half of each batch each) the hooked vectors wait for the flush's
all-reduce: they are unscaled before it, and the record is that of the unscaled single
process again.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch import nn

import gradprobe as gp
from gradprobe.stats.quantities import LAYER_QUANTITIES
from tests.test_probe_distributed import gather, init, save_rank
from tests.test_probe_sync import host_reads  # noqa: F401 (a fixture)

STEPS, MICRO, BLOWN = 6, 2, 2  # 6 iterations of 2 micro-batches; iteration 2 overflows
INIT_SCALE = 2.0**16


class Net(nn.Module):
    """LSTM (delta_norm_t), a Linear without bias (hooked delta), a Linear with one."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lstm = nn.LSTM(3, 6, batch_first=True)
        self.fc = nn.Linear(6, 8, bias=False)
        self.act = nn.Tanh()
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.fc(self.lstm(x)[0][:, -1])))


def batch(i: int, micro: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(100 * i + micro)
    return torch.randn(4, 5, 3, generator=g), torch.randint(0, 3, (4,), generator=g)


def train(
    scaled: bool, blown=None, left_out=None, tell_probe=True, part=slice(None), wrap=None, **watch
) -> gp.Record:
    """STEPS iterations of MICRO micro-batches; `blown` overflows; `left_out` is not run.

    `part` of each batch is used; `wrap` (e.g. DDP) wraps the model.
    """
    model = Net() if wrap is None else wrap(Net())
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    scaler = torch.amp.GradScaler("cpu", init_scale=INIT_SCALE, growth_interval=2, enabled=scaled)
    options = dict(detail_every=1, flush_every=3) | watch
    with gp.watch(model, opt, scaler=scaler if tell_probe else None, **options) as probe:
        for i in range(STEPS):
            if i == left_out:
                continue
            opt.zero_grad()
            for micro in range(MICRO):
                x, y = batch(i, micro)
                x, y = x[part], y[part]
                loss = nn.functional.cross_entropy(model(x), y) / MICRO
                scaler.scale(loss * math.inf if i == blown else loss).backward()
                probe.log_loss(loss * MICRO)
            scaler.step(opt)
            scaler.update()
    return probe.record()


def summary(rec: gp.Record) -> dict:
    out = {q: rec[q] for q in LAYER_QUANTITIES}
    out |= {"loss": rec.loss, "global_grad_norm": rec.global_grad_norm}
    return out | {"delta_norm_t": rec.series["delta_norm_t"]}


@pytest.fixture(scope="module")
def oracle() -> gp.Record:
    return train(False, left_out=BLOWN)


def test_hooked_deltas_are_those_of_the_unscaled_loss(oracle):
    rec = train(True, blown=None, left_out=BLOWN)
    assert list(rec.steps) == list(oracle.steps) == list(range(STEPS - 1))
    for name, want in summary(oracle).items():
        np.testing.assert_allclose(summary(rec)[name], want, rtol=1e-5, err_msg=name)
    fc, lstm = rec.layers.index("fc"), rec.layers.index("lstm")
    assert np.isfinite(rec["delta_norm"][:, [fc, lstm]]).all()
    assert np.isfinite(rec.series["delta_norm_t"][:, lstm]).all()


def test_a_skipped_step_is_dropped_and_later_steps_match_a_loop_without_it(oracle):
    rec = train(True, blown=BLOWN)
    assert list(rec.steps) == list(range(STEPS - 1))  # the skipped step is no step
    for name, want in summary(oracle).items():
        np.testing.assert_allclose(summary(rec)[name], want, rtol=1e-5, err_msg=name)
    assert rec.status == "done" and np.isfinite(rec.loss).all()
    assert np.all(rec["grad_nonfinite"] == 0) and np.all(rec["act_nonfinite"] == 0)


def ddp_worker(rank: int, port: int, tmp: str) -> None:
    init(rank, port)
    try:
        part = slice(rank * 2, rank * 2 + 2)  # half of each batch of 4
        rec = train(True, blown=BLOWN, part=part, wrap=nn.parallel.DistributedDataParallel)
        save_rank(tmp, rank, {"summary": summary(rec), "steps": list(rec.steps)})
    finally:
        dist.destroy_process_group()


def test_ddp_skipped_step_and_scaled_deltas(oracle, tmp_path):
    for got in gather(ddp_worker, tmp_path):
        assert got["steps"] == list(range(STEPS - 1))
        for name, want in summary(oracle).items():
            np.testing.assert_allclose(got["summary"][name], want, rtol=1e-5, err_msg=name)


def test_the_oracle_can_fail(oracle):
    """Not told the scaler, the probe records scaled deltas and carries the skipped step."""
    with pytest.warns(RuntimeWarning, match="first non-finite value at step 2, layer 'fc'"):
        rec = train(True, blown=BLOWN, tell_probe=False)
    fc = rec.layers.index("fc")
    ratio = rec["delta_norm"][:2, fc] / oracle["delta_norm"][:2, fc]
    np.testing.assert_allclose(ratio, [INIT_SCALE, INIT_SCALE], rtol=1e-5)
    assert not np.isfinite(rec["delta_norm"][BLOWN, fc])  # the overflow leaked in
    assert not np.isclose(rec.loss[BLOWN], oracle.loss[BLOWN], rtol=1e-6, atol=0)  # 4 batches
    np.testing.assert_allclose(rec["grad_norm"], oracle["grad_norm"], rtol=1e-5)  # unscaled


def test_discard_step_by_hand_drops_the_step_and_its_loss():
    model = Net()
    x, y = batch(0, 0)
    with gp.watch(model, detail_every=1) as probe:
        nn.functional.cross_entropy(model(x), y).backward()
        probe.log_loss(5.0)
        probe.step()
        model.zero_grad()
        nn.functional.cross_entropy(model(x * 1e3), y).backward()  # not kept
        probe.discard_step()
        probe.log_loss(7.0)  # the discarded step's: dropped
        model.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        probe.log_loss(6.0)
        probe.step()
    rec = probe.record()
    assert list(rec.steps) == [0, 1] and list(rec.loss) == [5.0, 6.0]
    for name in ("delta_norm", "act_mean", "act_std", "grad_norm"):
        np.testing.assert_allclose(rec[name][1], rec[name][0], rtol=1e-6, err_msg=name)


def test_without_an_optimizer_the_scale_of_the_backward_is_used():
    """probe.step() after scaler.update(): the scale that update grew is not the one used."""
    recs = []
    for scaled in (True, False):
        model = Net()
        opt = torch.optim.SGD(model.parameters(), lr=0.2)
        scaler = torch.amp.GradScaler("cpu", init_scale=8.0, growth_interval=1, enabled=scaled)
        with gp.watch(model, scaler=scaler, detail_every=1) as probe:
            for i in range(3):
                opt.zero_grad()
                x, y = batch(i, 0)
                scaler.scale(nn.functional.cross_entropy(model(x), y)).backward()
                scaler.step(opt)
                scaler.update()  # doubles the scale
                probe.step()
        recs.append(probe.record())
    assert scaler.get_scale() == 1.0  # disabled: the second run is unscaled
    for name in ("delta_norm", "grad_norm"):
        np.testing.assert_allclose(recs[0][name], recs[1][name], rtol=1e-6, err_msg=name)


def test_no_host_read_between_flushes(host_reads):  # noqa: F811
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    scaler = torch.amp.GradScaler("cpu", init_scale=INIT_SCALE, growth_interval=2)
    with gp.watch(model, opt, scaler=scaler, detail_every=2, flush_every=1000) as probe:
        for i in range(STEPS):
            if i == 1:
                host_reads.clear()
            opt.zero_grad()
            x, y = batch(i, 0)
            loss = nn.functional.cross_entropy(model(x), y)
            scaler.scale(loss * math.inf if i == 3 else loss).backward()
            scaler.step(opt)
            scaler.update()
            probe.log_loss(loss)
        assert dict(host_reads) == {}
    assert list(probe.record().steps) == list(range(STEPS - 1))


def test_bad_scaler_is_refused():
    model = Net()
    with pytest.raises(TypeError, match="scaler must be a torch.amp.GradScaler"):
        gp.watch(model, scaler=2.0**16)
    with gp.watch(model, scaler=torch.amp.GradScaler("cpu", enabled=False)) as probe:
        assert probe._amp is None  # disabled: nothing to undo
