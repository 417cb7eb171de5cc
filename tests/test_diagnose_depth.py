"""Depth rules and cause attribution on synthetic Records, and one probe-made oracle run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import gradprobe as gp
from gradprobe.diagnose.diagnosis import diagnose
from gradprobe.diagnose.thresholds import Thresholds
from gradprobe.record import Record

TH = Thresholds()


def chain(
    gains,
    *,
    widths=None,
    n_steps=10,
    activation="sigmoid",
    sigma_w=1.0,
    types=None,
    extra=None,
) -> Record:
    """A record whose per-unit delta falls by gains[l] from layer l+1 down to layer l.

    delta_norm[l] = r_l * sqrt(N_l) with r_top = 1; weight_norm = sigma_w * sqrt(N_out)
    (so ||W||_F / sqrt(N_out) = sigma_w, for every layer).
    """
    n = len(gains) + 1
    widths = widths or [64] * n
    names = [f"fc{i + 1}" for i in range(n)]
    r = np.ones(n)
    for lo in range(n - 2, -1, -1):
        r[lo] = r[lo + 1] * gains[lo]
    delta = np.tile(r * np.sqrt(widths), (n_steps, 1))
    weight = np.tile(sigma_w * np.sqrt(widths), (n_steps, 1))
    info = [
        {
            "name": name,
            "type": (types or ["Linear"] * n)[i],
            "activation": activation if i < n - 1 else None,
            "weight_shapes": [[widths[i], widths[i - 1] if i else 8]],
        }
        for i, name in enumerate(names)
    ]
    values = {"delta_norm": delta, "weight_norm": weight, **(extra or {})}
    return Record(names, np.arange(n_steps), values, layer_info=info)


def kinds(rec: Record, **th) -> list[str]:
    return [f.kind for f in diagnose(rec, **th)]


@pytest.mark.parametrize("links", [2, 4, 7])
def test_vanishing_just_below_and_above_the_ratio(links):
    below = TH.vanish_ratio * 0.98
    above = TH.vanish_ratio * 1.02
    (f,) = diagnose(chain([below ** (1 / links)] * links))
    assert f.kind == "vanishing_gradient" and f.severity == "warning"
    assert f.evidence["total_ratio"] == pytest.approx(below)
    assert f.evidence["n_layers"] == links
    assert diagnose(chain([above ** (1 / links)] * links)) == []


def test_error_severity_below_the_error_ratio():
    (f,) = diagnose(chain([(TH.vanish_ratio_error * 0.98) ** 0.25] * 4))
    assert f.severity == "error"
    (f,) = diagnose(chain([(TH.vanish_ratio_error * 1.02) ** 0.25] * 4))
    assert f.severity == "warning"


def test_exploding_is_symmetric():
    (f,) = diagnose(chain([(TH.explode_ratio * 1.02) ** (1 / 3)] * 3, activation="relu"))
    assert f.kind == "exploding_gradient" and f.severity == "warning"
    assert f.evidence["total_ratio"] == pytest.approx(TH.explode_ratio * 1.02)
    assert diagnose(chain([(TH.explode_ratio * 0.98) ** (1 / 3)] * 3)) == []
    (f,) = diagnose(chain([(TH.explode_ratio_error * 1.02) ** (1 / 3)] * 3))
    assert f.severity == "error"


def test_a_single_layer_drop_is_not_along_depth():
    assert diagnose(chain([1.0, 1.0, 1e-5])) == []
    assert kinds(chain([1.0, 1.0, 1e-5]), min_layers=1) == ["vanishing_gradient"]


def test_the_range_names_the_stretch_and_its_gains():
    (f,) = diagnose(chain([1.0, 1.0, 0.1, 0.1, 0.1, 1.0, 1.0]))
    assert f.layers == ("fc3", "fc4", "fc5", "fc6")
    assert f.evidence["layer_range"] == "fc3..fc6"
    assert f.evidence["gain_per_layer"] == pytest.approx(0.1)
    assert f.evidence["total_ratio"] == pytest.approx(1e-3)
    assert f.evidence["link_gains"] == pytest.approx(
        {"fc6->fc5": 0.1, "fc5->fc4": 0.1, "fc4->fc3": 0.1}
    )
    assert str(f).startswith(
        "vanishing_gradient at fc3..fc6 (steps 0-4): x0.1 per layer, 1.0e-03 at fc3 over 3 layers"
    )


def test_one_noisy_step_neither_makes_nor_breaks_a_finding():
    healthy = chain([0.9] * 4)
    delta = healthy["delta_norm"].copy()
    delta[2, 0] *= 1e-8  # one step where fc1's delta collapses
    noisy = Record(
        healthy.layers,
        healthy.steps,
        {"delta_norm": delta, "weight_norm": healthy["weight_norm"]},
        layer_info=healthy.layer_info,
    )
    assert diagnose(noisy) == []
    sick = chain([0.2] * 4)
    delta = sick["delta_norm"].copy()
    delta[1] = delta[1, -1]  # one step where every layer got the same delta
    noisy = Record(
        sick.layers,
        sick.steps,
        {"delta_norm": delta, "weight_norm": sick["weight_norm"]},
        layer_info=sick.layer_info,
    )
    (f,) = diagnose(noisy)
    assert f.evidence["gain_per_layer"] == pytest.approx(0.2)
    assert f.steps == (0, 1, 2, 3, 4)


def test_all_nan_layers_are_skipped_and_named():
    rec = chain([0.2] * 4)
    delta = rec["delta_norm"].copy()
    delta[:, 2] = np.nan  # fc3 has no bias and was not hooked
    rec = Record(
        rec.layers,
        rec.steps,
        {"delta_norm": delta, "weight_norm": rec["weight_norm"]},
        layer_info=rec.layer_info,
    )
    (f,) = diagnose(rec)
    assert f.evidence["skipped_layers"] == ["fc3"]
    assert f.layers == ("fc1", "fc2", "fc4", "fc5")
    assert f.evidence["total_ratio"] == pytest.approx(0.2**4)


def test_width_changes_are_normalised_per_unit():
    # per-unit RMS delta constant, widths 4096 -> 4: the raw norms differ by 32x
    rec = chain([1.0] * 3, widths=[4, 64, 1024, 4096])
    raw = rec["delta_norm"][0]
    assert raw[0] / raw[-1] == pytest.approx(1 / 32)
    assert diagnose(rec, vanish_ratio=0.05) == []


def test_late_window_when_the_early_steps_are_healthy():
    early = chain([1.0] * 4, n_steps=20)
    late = chain([0.05] * 4, n_steps=20)
    delta = np.vstack([early["delta_norm"][:10], late["delta_norm"][10:]])
    rec = Record(
        early.layers,
        early.steps,
        {"delta_norm": delta, "weight_norm": early["weight_norm"]},
        layer_info=early.layer_info,
    )
    (f,) = diagnose(rec)
    assert f.evidence["window"] == "late" and f.steps == (15, 16, 17, 18, 19)


# -- attribution: records that differ only in the weight scale -------------------------
def test_attribution_names_the_activation_when_the_weights_are_at_scale():
    sat = np.full((10, 5), 0.4)
    (f,) = diagnose(chain([0.2] * 4, sigma_w=1.0, extra={"saturated_frac": sat}))
    assert f.evidence["driver"] == "activation"
    assert f.evidence["factor_per_layer"] == pytest.approx({"activation": 0.2, "weight": 1.0})
    assert f.evidence["saturated_frac"] == pytest.approx(0.4)
    assert f.cause.startswith("the sigmoid derivative, at most 1/4 (40% of the units saturated")
    assert f.fix.startswith("use ReLU with He init")


def test_attribution_names_the_weight_scale_when_the_activation_is_at_its_slope():
    (f,) = diagnose(chain([0.2] * 4, sigma_w=0.2))
    assert f.evidence["driver"] == "weight"
    assert f.evidence["factor_per_layer"] == pytest.approx({"activation": 1.0, "weight": 0.2})
    assert "too small an init scale" in f.cause
    assert f.fix.startswith("scale the weights by x5")


def test_relu_reference_is_he_init():
    # ReLU with sigma_w^2 = 2 * 0.09: weight factor 0.3 against He, activation at 1/sqrt(2)
    gain = 0.3
    rec = chain([gain] * 5, activation="ReLU", sigma_w=gain * math.sqrt(2))  # class name
    (f,) = diagnose(rec)
    assert f.evidence["factor_per_layer"] == pytest.approx({"activation": 1.0, "weight": gain})
    assert "sigma_w^2 should be about 2 (He init)" in f.cause
    assert "kaiming_normal_" in f.fix


def test_normalisation_drives_explosion_through_batchnorm_layers():
    # Linear, BatchNorm1d alternating: only the links into a BatchNorm grow (x5 each)
    gains = [5.0, 1.0] * 3
    types = ["Linear", "BatchNorm1d"] * 3 + ["Linear"]
    (f,) = diagnose(chain(gains, activation="relu", sigma_w=math.sqrt(2), types=types))
    assert f.kind == "exploding_gradient"
    assert f.evidence["driver"] == "normalisation"
    assert "Yang et al. 2019" in f.cause and "residual" in f.fix


def test_weight_norm_missing_says_so():
    rec = chain([0.2] * 4)
    rec = Record(
        rec.layers, rec.steps, {"delta_norm": rec["delta_norm"]}, layer_info=rec.layer_info
    )
    (f,) = diagnose(rec)
    assert f.evidence["driver"] == "unknown" and "not recorded" in f.cause


def test_probe_made_oracle_deep_linear_orthogonal():
    """Deep linear net, W = c Q (Q orthogonal): ||W^T d|| = c ||d|| exactly, so the gain is c
    per layer, all of it the weight factor (||cQ||_F / sqrt(N) = c)."""
    torch.manual_seed(0)
    c, depth = 0.3, 6
    model = nn.Sequential(*[nn.Linear(32, 32) for _ in range(depth)])
    for layer in model:
        nn.init.orthogonal_(layer.weight)
        layer.weight.data *= c
        nn.init.zeros_(layer.bias)
    with gp.watch(model, weight_change=False) as probe:
        for _ in range(6):
            model.zero_grad()
            model(torch.randn(16, 32)).pow(2).sum().backward()
            probe.step()
    (f,) = diagnose(probe.record())
    assert f.kind == "vanishing_gradient" and f.layers == tuple(str(i) for i in range(depth))
    assert f.evidence["total_ratio"] == pytest.approx(c ** (depth - 1), rel=1e-5)
    assert f.evidence["factor_per_layer"]["weight"] == pytest.approx(c, rel=1e-5)
    assert f.evidence["factor_per_layer"]["activation"] == pytest.approx(1.0, rel=1e-5)
    assert f.evidence["driver"] == "weight"
