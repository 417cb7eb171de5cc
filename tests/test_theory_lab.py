"""The lab's configs as theory specs, predict_run on a run directory, compare, and the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import gradprobe as gp
from gradprobe.cli import app
from gradprobe.lab.config import Experiment
from gradprobe.lab.theory_spec import lab_spec, layer_variances, predict_config, predict_run
from gradprobe.theory import NotPredictedError, compare, predict

torch.set_num_threads(1)
runner = CliRunner(env={"COLUMNS": "120", "NO_COLOR": "1"})
LAB = dict(seed=0, depth=3, width=48, activation="tanh", init="glorot_normal", steps=2)


def test_layer_variances_follow_the_lab_inits():
    assert layer_variances("glorot_normal", 64, 32) == pytest.approx((64 * 2 / 96, 0.0))
    assert layer_variances("he_normal", 50, 10) == pytest.approx((2.0, 0.0))
    assert layer_variances("nielsen", 30, 30) == pytest.approx((1.0, 1.0))  # b ~ N(0, 1)
    assert layer_variances("torch_default", 30, 30) == pytest.approx((1 / 3, 1 / 90))
    assert layer_variances("orthogonal", 64, 32, gain=2.0) == pytest.approx((4.0, 0.0))
    assert layer_variances("lecun_normal", 9, 9, bias_init="normal")[1] == 1.0
    for init, why in (("uniform", "non-zero-mean"), ("scaled_identity", "deterministic")):
        with pytest.raises(NotPredictedError, match=why):
            layer_variances(init, 8, 8)
    with pytest.raises(NotPredictedError, match="constant non-zero bias"):
        layer_variances("he_normal", 8, 8, bias_init=0.5)
    with pytest.raises(NotPredictedError, match="BatchNorm"):
        lab_spec("relu", "he_normal", [8, 8, 2], norm="batch")


def test_predict_config_verdict_names_the_critical_init():
    pred = predict_config("tanh", "glorot_normal", depth=50, width=256, bias_var=0.05)
    assert len(pred.layers) == 51
    text = pred.verdict()
    assert text.startswith("vanishes: ||delta|| x")
    assert "critical sigma_w^2 for tanh at this bias variance (0.05) is 1.761" in text
    # ln of the norm ratio at the first layer, as the verdict prints it
    assert f"x{math.exp(0.5 * pred.total_log_gain):.1e}" in text
    with pytest.raises(ValueError, match="activation='sigmod' is not one of"):
        predict_config("sigmod", "glorot_normal", depth=2, width=8)


@pytest.fixture(scope="module")
def lab_run(tmp_path_factory):
    from gradprobe.lab.trainer import train

    out = tmp_path_factory.mktemp("theory") / "run"
    train(Experiment(**LAB), out, progress=False)
    return out


def test_predict_run_uses_the_config_and_the_data(lab_run):
    rec = gp.load(lab_run)
    pred = predict_run(lab_run)
    assert pred.layers == rec.layers == ["fc1", "fc2", "fc3", "fc4"]
    from gradprobe.lab.build import load_data

    x = np.asarray(load_data(Experiment(**LAB)).x_train, dtype=float)
    expected = predict(
        lab_spec("tanh", "glorot_normal", [64, 48, 48, 48, 10]), float(np.mean(x**2))
    )
    np.testing.assert_allclose(pred["log_gain"], expected["log_gain"], rtol=1e-12)
    assert predict_run(rec, input_var=1.0)["q"][0] == pytest.approx(64 * 2 / 112)


def test_compare_measures_from_delta_norm(lab_run):
    rec = gp.load(lab_run)
    pred = predict_run(rec)
    comp = compare(pred, rec)
    dn = rec["delta_norm"][0]
    np.testing.assert_allclose(comp.measured, 2 * np.log(dn[:-1] / dn[1:]), rtol=1e-12)
    np.testing.assert_allclose(comp.diff, comp.measured - pred["log_gain"][:-1], rtol=1e-12)
    assert comp.steps == [0] and comp.reason.startswith("parts from mean field")
    assert compare(pred, rec, step=1).reason.startswith("after training starts")
    assert json.loads(json.dumps(comp.to_dict()))["rows"][0]["layer"] == "fc1"


def test_compare_flags_the_layer_that_parts():
    pred = predict(lab_spec("tanh", "glorot_normal", [64, 256, 256, 256, 10]))
    log_d = pred["cum_log_gain"] / 2  # ln ||delta^l|| relative to the last
    dn = np.exp(log_d)[None, :].repeat(2, 0)
    dn[0, 1] *= math.exp(0.5)  # fc2's delta off by +1 in ln norm^2
    rec = gp.Record(pred.layers, [0, 1], {"delta_norm": dn})
    comp = compare(pred, rec)
    assert comp.parted.tolist() == [True, True, False]
    np.testing.assert_allclose(comp.diff, [-1, 1, 0], atol=1e-12)
    assert comp.summary().startswith("fc1, fc2 part from the prediction")
    with pytest.raises(ValueError, match="not a recorded step"):
        compare(pred, rec, step=7)


def test_runs_the_theory_does_not_cover_give_none():
    config = Experiment(**{**LAB, "norm": "batch"}).to_dict()
    info = [{"name": n, "type": "Linear", "weight_shapes": [[4, 4]]} for n in ("fc1", "fc2")]
    rec = gp.Record(["fc1", "fc2"], [0], {"delta_norm": np.ones((1, 2))}, layer_info=info,
                    meta={"config": config})  # fmt: skip
    assert predict_run(rec) is None
    assert predict_run(gp.Record(["a"], [0], {"delta_norm": np.ones((1, 1))})) is None


def test_cli_predict_prints_table_and_verdict(tmp_path):
    out = tmp_path / "p.json"
    args = ["predict", "--activation", "tanh", "--init", "glorot_normal", "--depth", "50",
            "--width", "256", "--bias-var", "0.05", "--json", str(out)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "fc51" in result.output and "vanishes" in result.output
    assert "1.761" in result.output
    assert len(json.loads(out.read_text())["layers"]) == 51
    bad = runner.invoke(app, ["predict", "--activation", "sigmod"])
    assert bad.exit_code == 2 and "is not one of: sigmoid, tanh" in bad.output


def test_cli_predict_takes_designs_short_init_names(tmp_path):
    # DESIGN.md: `gradprobe predict --activation tanh --init glorot --depth 50 --width 256`
    def prediction(init: str) -> dict:
        out = tmp_path / f"{init}.json"
        args = ["predict", "--activation", "tanh", "--init", init, "--depth", "50",
                "--width", "256", "--json", str(out)]  # fmt: skip
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        return json.loads(out.read_text())

    assert prediction("glorot") == prediction("glorot_normal")
    assert prediction("he")["values"]["chi"] == prediction("he_normal")["values"]["chi"]
    assert prediction("he")["values"]["chi"] != prediction("glorot")["values"]["chi"]


def test_cli_diagnose_shows_predicted_vs_measured(lab_run):
    result = runner.invoke(app, ["diagnose", str(lab_run)])
    assert "log-gain per layer at init" in result.output
    comp = compare(predict_run(lab_run), gp.load(lab_run))
    assert comp.summary()[:40] in result.output.replace("\n", " ")
