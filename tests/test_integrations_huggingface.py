"""GradprobeTrainerCallback in a real Hugging Face Trainer (accelerate underneath), on CPU.

The oracle is the real torch optimizer under accelerate's AcceleratedOptimizer: a step
pre-hook registered by the test reads every parameter's .grad as the step receives it,
after accumulation, clipping and GradScaler unscaling. The first step is also checked
against a manual accumulation by torch autograd. Models are built from a config: nothing
is downloaded.
"""

from __future__ import annotations

import json
import math
import os
import sys

import numpy as np
import pytest
import torch
from torch import nn

os.environ["HF_HUB_OFFLINE"] = "1"  # never reach the hub
transformers = pytest.importorskip(
    "transformers", reason="the Hugging Face callback needs transformers (extra)"
)
pytest.importorskip("accelerate", reason="the Hugging Face Trainer needs accelerate (extra)")

from transformers.modeling_outputs import SequenceClassifierOutput  # noqa: E402

from gradprobe.integrations import GradprobeTrainerCallback  # noqa: E402
from gradprobe.integrations.common import real_optimizer  # noqa: E402

N, BATCH, ACCUMULATE = 32, 2, 4  # 16 micro-batches: 4 optimizer steps per epoch


class TinyConfig(transformers.PretrainedConfig):
    model_type = "gradprobe-tiny"

    def __init__(self, n_in: int = 4, width: int = 8, **kwargs) -> None:
        super().__init__(**kwargs)
        self.n_in, self.width = n_in, width


class TinyClassifier(transformers.PreTrainedModel):
    """Linear-tanh-linear; remembers its training inputs; can fail, or blow its loss up
    (x 1e36: scaled by a GradScaler it overflows fp32), at given forwards."""

    config_class = TinyConfig

    def __init__(self, config: TinyConfig, fail_at: int | None = None, blow_at=()) -> None:
        super().__init__(config)
        self.fc1 = nn.Linear(config.n_in, config.width)
        self.act = nn.Tanh()
        self.fc2 = nn.Linear(config.width, 2)
        self.fail_at, self.blow_at, self.seen = fail_at, blow_at, []

    def forward(self, x, labels=None):
        if self.training and len(self.seen) == self.fail_at:
            raise RuntimeError(f"boom at forward {self.fail_at}")
        if self.training:
            self.seen.append((x.detach().clone(), labels.clone()))
        logits = self.fc2(self.act(self.fc1(x)))
        loss = None if labels is None else nn.functional.cross_entropy(logits.float(), labels)
        if self.training and len(self.seen) - 1 in self.blow_at:
            loss = loss * 1e36
        return SequenceClassifierOutput(loss=loss, logits=logits)


def dataset() -> list[dict]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, 4, generator=g)
    return [{"x": x[i], "labels": int(x[i, 0] > 0)} for i in range(N)]


class GradCapture(transformers.TrainerCallback):
    """Per real optimizer step: ||grad|| of every parameter and the global norm."""

    def __init__(self) -> None:
        self.steps: list[dict[str, float]] = []

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        def read(opt, args, kwargs):
            norms = {n: p.grad.double().norm().item() for n, p in model.named_parameters()}
            norms["global"] = math.sqrt(sum(v**2 for v in norms.values()))
            self.steps.append(norms)

        real_optimizer(optimizer).register_step_pre_hook(read)


def trainer_for(model, callbacks, tmp_path, data=None, **kwargs):
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=BATCH,
        gradient_accumulation_steps=ACCUMULATE,
        num_train_epochs=1,
        learning_rate=1e-2,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        seed=0,
        **kwargs,
    )
    data = dataset() if data is None else data
    return transformers.Trainer(model=model, args=args, train_dataset=data, callbacks=callbacks)


def assert_grads_match(rec, captured, model):
    assert len(rec) == len(captured) > 0
    for j, layer in enumerate(rec.layers):
        params = dict(model.get_submodule(layer).named_parameters(recurse=False))
        want = [s[f"{layer}.weight"] for s in captured]
        np.testing.assert_allclose(rec["grad_norm"][:, j], want, rtol=1e-5)
        if "bias" in params:
            want = [s[f"{layer}.bias"] for s in captured]
            np.testing.assert_allclose(rec["bias_grad_norm"][:, j], want, rtol=1e-5)
    np.testing.assert_allclose(rec.global_grad_norm, [s["global"] for s in captured], rtol=1e-5)


def test_accumulation_clipping_and_loss_match_the_trainer(tmp_path):
    torch.manual_seed(0)
    model, capture = TinyClassifier(TinyConfig()), GradCapture()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    callback = GradprobeTrainerCallback(detail_every=1)
    trainer = trainer_for(model, [callback, capture], tmp_path, max_grad_norm=0.05)
    trainer.train()
    rec = callback.record()
    assert rec.layers == ["fc1", "fc2"] and rec.status == "done"
    assert list(rec.steps) == [0, 1, 2, 3] and trainer.state.global_step == 4
    assert_grads_match(rec, capture.steps, model)
    # step 0 by hand: sum over 4 micro-batches of grad(loss / 4), clipped to norm 0.05
    oracle = TinyClassifier(TinyConfig())
    oracle.load_state_dict(initial)
    for x, y in model.seen[:ACCUMULATE]:
        (oracle(x, y).loss / ACCUMULATE).backward()
    grads = {n: p.grad.double().norm().item() for n, p in oracle.named_parameters()}
    coef = min(1.0, 0.05 / (math.sqrt(sum(v**2 for v in grads.values())) + 1e-6))
    assert coef < 1  # the clipping acted
    assert rec["grad_norm"][0, 0] == pytest.approx(grads["fc1.weight"] * coef, rel=1e-5)
    # the loss of each step is what the Trainer itself logs (rounded to 4 digits there)
    logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    np.testing.assert_allclose(rec.loss, logged, atol=1e-4)
    run = json.loads((tmp_path / "out" / "gradprobe" / "run.json").read_text())  # default
    assert run["gradient_accumulation_steps"] == ACCUMULATE and run["skipped_steps"] == 0


def test_bert_with_bf16_autocast(tmp_path):
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=40,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=8,
        num_labels=2,
    )
    model = transformers.BertForSequenceClassification(config)
    ids = torch.randint(0, 40, (N, 6), generator=torch.Generator().manual_seed(1))
    data = [{"input_ids": ids[i], "labels": int(ids[i, 0] % 2)} for i in range(N)]
    callback, capture = GradprobeTrainerCallback(tmp_path / "run", every=2), GradCapture()
    trainer_for(model, [callback, capture], tmp_path, data=data, bf16=True).train()
    rec = callback.record()
    assert "classifier" in rec.layers and list(rec.steps) == [0, 2]  # every=2 passed on
    assert_grads_match(rec, capture.steps[::2], model)


def test_grad_scaler_unscaled_and_skipped_steps_are_no_steps(tmp_path):
    # accelerate refuses fp16 on CPU, so the test gives the Trainer's accelerator a CPU
    # GradScaler itself (fp32 forward, scaled backward): AcceleratedOptimizer then runs
    # its scaler path, with the default fused AdamW. A loss blown up in the first and
    # third steps overflows once scaled: the scaler skips those two steps.
    def run(callbacks):
        torch.manual_seed(0)
        model = TinyClassifier(TinyConfig(), blow_at=(1, 9))
        trainer = trainer_for(
            model, callbacks, tmp_path, max_grad_norm=0, lr_scheduler_type="constant"
        )
        trainer.accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
        trainer.train()
        return trainer, model

    callback, capture = GradprobeTrainerCallback(delta="hook"), GradCapture()
    trainer, model = run([callback, capture])
    rec = callback.record()
    assert callback.skipped_steps == 2
    assert len(rec) == len(capture.steps) == 2
    assert_grads_match(rec, capture.steps, model)
    # hooked deltas (dC/dz summed over the micro-batches) equal the bias gradients: divided
    # by the scale, and the skipped steps' micro-batches (and losses) dropped
    for j, layer in enumerate(rec.layers):
        want = [s[f"{layer}.bias"] for s in capture.steps]
        np.testing.assert_allclose(rec["delta_norm"][:, j], want, rtol=1e-5, err_msg=layer)
    assert np.all(rec.loss < 10)  # no blown-up loss of a skipped step in a mean
    # a gradient still scaled would be scale x larger than the unscaled one
    assert trainer.accelerator.scaler.get_scale() == 2.0**14 and np.all(rec.global_grad_norm < 10)
    assert real_optimizer(trainer.optimizer)._step_supports_amp_scaling  # given back
    # the fused kernel unscaling by itself gives the same weights, bit for bit (a constant
    # lr: accelerate misses a fused optimizer's skipped step and would step the schedule)
    _, alone = run([])
    for a, b in zip(model.parameters(), alone.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_exception_in_train_closes_the_run_and_removes_every_hook(tmp_path):
    torch.manual_seed(0)
    model = TinyClassifier(TinyConfig(), fail_at=9)  # in the third step
    callback = GradprobeTrainerCallback(tmp_path / "run")
    trainer = trainer_for(model, [callback], tmp_path)
    with pytest.raises(RuntimeError, match="boom at forward 9"), callback:
        trainer.train()
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["status"] == "failed" and "boom at forward 9" in run["error"]
    assert len(callback.record()) == 2
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    opt = real_optimizer(trainer.optimizer)
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks


def test_bad_options_are_refused():
    with pytest.raises(TypeError, match="'evry' is not an option of gradprobe.watch; allowed:"):
        GradprobeTrainerCallback(evry=2)
    assert "GradprobeTrainerCallback(run_dir=None" in repr(GradprobeTrainerCallback())


def test_missing_framework_says_how_to_install_it(monkeypatch):
    import gradprobe.integrations as integrations

    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` fails
    monkeypatch.delitem(sys.modules, "gradprobe.integrations.huggingface")
    message = r'needs transformers, which is not installed: pip install "gradprobe\[transformers\]"'
    with pytest.raises(ImportError, match=message):
        integrations.__getattr__("GradprobeTrainerCallback")
