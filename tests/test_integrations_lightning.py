"""GradprobeCallback in a real Lightning Trainer: the gradients the optimizer used, per step.

The oracle is the real torch optimizer itself: a step post-hook registered by the test
reads every parameter's .grad when the step has run (SGD leaves .grad as it found it), so
it sees what the step used, after Lightning's accumulation and the GradScaler's unscaling.
The first step is also checked against a manual accumulation by torch autograd.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

L = pytest.importorskip("lightning", reason="the Lightning callback needs lightning (extra)")

from lightning.pytorch.plugins.precision import MixedPrecision  # noqa: E402

from gradprobe.integrations import GradprobeCallback  # noqa: E402

N, BATCH, ACCUMULATE = 64, 4, 4  # 16 batches: 4 optimizer steps per epoch


class Net(L.LightningModule):
    def __init__(self, fail_at: int | None = None, fused: bool = False) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
        self.fail_at, self.fused = fail_at, fused
        self.raw_losses: list[float] = []

    def training_step(self, batch, batch_idx):
        if batch_idx == self.fail_at:
            raise RuntimeError(f"boom at batch {batch_idx}")
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.raw_losses.append(float(loss.detach()))
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, fused=self.fused or None)


def loader():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, 4, generator=g)
    y = (x[:, 0] > 0).long()
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=BATCH)


class GradCapture(L.Callback):
    """Per real optimizer step: ||grad|| of each layer's weight and bias, and the global."""

    def __init__(self) -> None:
        self.steps: list[dict[str, float]] = []

    def on_train_start(self, trainer, pl_module):
        def read(optimizer, args, kwargs):
            norms = {n: p.grad.double().norm().item() for n, p in pl_module.named_parameters()}
            norms["global"] = math.sqrt(sum(v**2 for v in norms.values()))
            self.steps.append(norms)

        trainer.optimizers[0].register_step_post_hook(read)


def fit(module, callbacks, tmp_path, **kwargs):
    trainer = L.Trainer(
        max_epochs=1,
        accumulate_grad_batches=ACCUMULATE,
        callbacks=callbacks,
        default_root_dir=tmp_path,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )
    trainer.fit(module, loader())
    return trainer


def assert_grads_match(rec, captured):
    assert len(rec) == len(captured) > 0
    for j, layer in enumerate(rec.layers):  # net.0, net.2
        want = [s[f"{layer}.weight"] for s in captured]
        np.testing.assert_allclose(rec["grad_norm"][:, j], want, rtol=1e-5)
        want = [s[f"{layer}.bias"] for s in captured]
        np.testing.assert_allclose(rec["bias_grad_norm"][:, j], want, rtol=1e-5)
    np.testing.assert_allclose(rec.global_grad_norm, [s["global"] for s in captured], rtol=1e-5)


def manual_first_step_norm(module: Net) -> float:
    """||sum over the first 4 micro-batches of grad(loss / 4)|| of net.0.weight, by autograd."""
    weight = module.net[0].weight
    grads = []
    for i, (x, y) in enumerate(loader()):
        if i == ACCUMULATE:
            break
        loss = nn.functional.cross_entropy(module.net(x), y) / ACCUMULATE
        grads.append(torch.autograd.grad(loss, weight)[0])
    return torch.stack(grads).sum(0).double().norm().item()


def test_accumulation_records_the_gradient_of_each_optimizer_step(tmp_path):
    torch.manual_seed(0)
    module, capture = Net(), GradCapture()
    first = manual_first_step_norm(module)
    callback = GradprobeCallback(detail_every=1)
    fit(module, [callback, capture], tmp_path)
    rec = callback.record()
    assert rec.layers == ["net.0", "net.2"]
    assert rec.status == "done" and list(rec.steps) == [0, 1, 2, 3]  # 16 batches / 4
    assert_grads_match(rec, capture.steps)
    assert rec["grad_norm"][0, 0] == pytest.approx(first, rel=1e-5)
    # the step's loss is the mean of its micro-batches' losses (Lightning divides by 4)
    micro = np.array(module.raw_losses).reshape(-1, ACCUMULATE)
    np.testing.assert_allclose(rec.loss, micro.mean(axis=1), rtol=1e-6)
    run = json.loads((tmp_path / "gradprobe" / "run.json").read_text())  # the default dir
    assert run["status"] == "done" and run["accumulate_grad_batches"] == ACCUMULATE
    assert run["skipped_steps"] == 0


def test_options_pass_through_to_watch(tmp_path):
    torch.manual_seed(0)
    callback = GradprobeCallback(tmp_path / "run", every=2, detail_every=1)
    fit(Net(), [callback], tmp_path)
    assert list(callback.record().steps) == [0, 2]
    assert (tmp_path / "run" / "metrics.sqlite").exists()


def test_bf16_autocast_records_the_fp32_gradients(tmp_path):
    torch.manual_seed(0)
    callback, capture = GradprobeCallback(detail_every=1), GradCapture()
    fit(Net(), [callback, capture], tmp_path, precision="bf16-mixed")
    rec = callback.record()
    assert len(rec) == 4
    assert_grads_match(rec, capture.steps)


@pytest.mark.parametrize("fused", [False, True])
def test_fp16_grad_scaler_unscaled_and_skipped_steps_are_no_steps(tmp_path, fused):
    # Lightning turns precision="16-mixed" on CPU into bf16; the plugin itself runs fp16
    # autocast with a CPU GradScaler. 2**21 x the gradient overflows fp16 (max 65504),
    # so the scaler skips the first step(s) and halves its scale until it does not.
    torch.manual_seed(0)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**21)
    plugin = MixedPrecision("16-mixed", "cpu", scaler=scaler)
    module, capture = Net(fused=fused), GradCapture()
    callback = GradprobeCallback(delta="hook", detail_every=1)
    fit(module, [callback, capture], tmp_path, plugins=[plugin])
    rec = callback.record()
    assert callback.skipped_steps >= 1
    assert len(rec) == len(capture.steps) == 4 - callback.skipped_steps
    assert all(math.isfinite(s["global"]) for s in capture.steps)
    assert_grads_match(rec, capture.steps)
    # hooked deltas (dC/dz summed over the batches of the step) are the bias gradients:
    # divided by the scaler's scale, and without the skipped steps' batches (inf). fp16
    # autocast: autograd sums the bias gradient in fp16, the probe in fp32
    for j, layer in enumerate(rec.layers):
        want = [s[f"{layer}.bias"] for s in capture.steps]
        np.testing.assert_allclose(rec["delta_norm"][:, j], want, rtol=2e-3, err_msg=layer)
    assert np.isfinite(rec["act_std"]).all() and np.all(rec["act_nonfinite"] == 0)
    # a gradient still scaled would be scale x larger than the unscaled one
    assert scaler.get_scale() >= 2.0**10 and np.all(rec.global_grad_norm < 10)
    opt = module.trainer.optimizers[0]
    assert getattr(opt, "_step_supports_amp_scaling", False) is fused  # given back at the end


def test_exception_marks_the_run_failed_and_removes_every_hook(tmp_path):
    torch.manual_seed(0)
    module, callback = Net(fail_at=6), GradprobeCallback(tmp_path / "run")
    with pytest.raises(RuntimeError, match="boom at batch 6"):
        fit(module, [callback], tmp_path)
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["status"] == "failed" and "boom at batch 6" in run["error"]
    assert callback.probe.closed and len(callback.record()) == 1  # step 0 (batches 0-3)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in module.modules())
    opt = module.trainer.optimizers[0]
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks


def test_the_real_optimizer_is_found_under_lightnings_wrapper():
    from lightning.pytorch.core.optimizer import LightningOptimizer

    from gradprobe.integrations.common import real_optimizer

    opt = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    assert real_optimizer(LightningOptimizer(opt)) is opt and real_optimizer(opt) is opt
    with pytest.raises(TypeError, match="found no torch.optim.Optimizer under str"):
        real_optimizer("adam")


def test_only_the_writer_rank_writes_the_run_directory(tmp_path):
    from gradprobe.integrations.common import attach

    model = nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    options = {"overwrite": True, "every": 1}
    with attach(model, opt, tmp_path / "other", options, writer=False) as probe:
        model(torch.ones(1, 2)).sum().backward()
        opt.step()
    assert len(probe.record()) == 1 and not (tmp_path / "other").exists()
    with attach(model, opt, tmp_path / "zero", options, writer=True):
        pass
    assert (tmp_path / "zero" / "run.json").exists()


def test_bad_options_are_refused():
    with pytest.raises(TypeError, match="'evry' is not an option of gradprobe.watch; allowed:"):
        GradprobeCallback(evry=2)
    with pytest.raises(TypeError, match="optimizer= is set by the callback"):
        GradprobeCallback(optimizer=None)
    assert "GradprobeCallback(run_dir=None" in repr(GradprobeCallback())


def test_importing_integrations_loads_no_framework():
    code = (
        "import sys, gradprobe.integrations as gi\n"
        "print('lightning' in sys.modules, 'transformers' in sys.modules, gi.__all__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False ['GradprobeCallback', 'GradprobeTrainerCallback']"
