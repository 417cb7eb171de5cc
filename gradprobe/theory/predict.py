"""`predict(model_or_spec, input_var=1.0)`: the mean-field forecast before any training step."""

from __future__ import annotations

import math

import numpy as np

from gradprobe.theory.critical import check_variance
from gradprobe.theory.length_map import Q_INF, backward, fixed_point, forward
from gradprobe.theory.prediction import CRITICAL_TOL, Prediction
from gradprobe.theory.spec import NetworkSpec


class NotPredictedError(ValueError):
    """The network holds a layer the theory does not predict through (BatchNorm, attention,
    recurrent, unknown); the message names its type and why."""


def _as_spec(model_or_spec) -> NetworkSpec:
    if isinstance(model_or_spec, NetworkSpec):
        return model_or_spec
    import torch

    if isinstance(model_or_spec, torch.nn.Module):
        from gradprobe.theory.model_spec import spec_from_model

        return spec_from_model(model_or_spec)
    raise ValueError(
        f"predict needs a torch.nn.Module or a NetworkSpec, got {type(model_or_spec).__name__}"
    )


def _fixed(spec: NetworkSpec, q: np.ndarray) -> tuple[dict | None, object]:
    """The deep layers' fixed point for a plain chain (no residual, no norm), else None.

    The deep map is that of the last hidden layer: its activation, sigma_w^2, sigma_b^2.
    """
    plain = all(x.alpha is None and x.norm is None for x in spec.layers)
    if not plain or len(spec) < 2 or spec.uncovered() or not np.isfinite(q[-2]):
        return None, None
    deep = spec.layers[-2]
    from gradprobe.theory.activations import get_activation

    act = deep.activation or get_activation("linear")
    q_star = fixed_point(act, deep.sigma_w2, deep.sigma_b2, float(q[-2]))
    chi_1 = deep.sigma_w2 * float(act.dphi2(np.array([min(q_star, Q_INF)]))[0])
    log_chi = math.log(chi_1) if chi_1 > 0 else -math.inf
    phase = "critical" if abs(log_chi) < CRITICAL_TOL else "ordered" if log_chi < 0 else "chaotic"
    fixed = {
        "q_star": q_star,
        "chi_1": chi_1,
        "depth_scale": 1 / abs(log_chi) if log_chi != 0 else math.inf,
        "phase": phase,
        "activation": act.name,
        "sigma_w2": deep.sigma_w2,
        "sigma_b2": deep.sigma_b2,
    }
    return fixed, act


def _cumulative(log_gain: np.ndarray, var: np.ndarray) -> dict[str, np.ndarray]:
    """Sums from each layer to the last: typical log gain and its sd."""
    typical = log_gain - var / 2  # E ln = ln E - Var / 2 for a log-normal gain
    rev = np.cumsum(typical[:-1][::-1])[::-1]
    sd = np.sqrt(np.cumsum(var[:-1][::-1])[::-1])
    return {
        "log_gain_typical": typical,
        "cum_log_gain_typical": np.append(rev, 0.0),
        "cum_sd": np.append(sd, 0.0),
    }


def predict(model_or_spec, input_var: float = 1.0, *, strict: bool = True) -> Prediction:
    """Per-layer q^l, chi and log-gain of a network at initialisation (mean field).

    Args:
        model_or_spec: an nn.Module (read from its actual weights: nn.Sequential of
            Linear / Conv and activations, the lab's mlp and residual_mlp) or a NetworkSpec.
        input_var: the mean square of the input features (>= 0).
        strict: raise on a layer the theory does not cover; False returns nan for it and
            every later layer, with the reason in `Prediction.flags`.

    Returns:
        A Prediction: `pred.layers`, `pred["q"]`, `pred["chi"]`, `pred["log_gain"]`, ...

    Raises:
        NotPredictedError: (strict) a BatchNorm, attention, recurrent or unknown layer,
            named by type. ValueError: negative input_var, not a model or spec.
    """
    input_var = check_variance("input_var", input_var)
    spec = _as_spec(model_or_spec)
    uncovered = spec.uncovered()
    if strict and uncovered:
        first = uncovered[0]
        raise NotPredictedError(
            f"cannot predict through layer {first.name!r} ({first.layer_type}): "
            f"{first.not_predicted}; pass strict=False for a prediction flagged per layer"
        )
    fwd = forward(spec, input_var)
    bwd = backward(spec, fwd)
    values = {
        "q": fwd["q"],
        "chi": np.exp(bwd["log_gain"]),
        "log_gain": bwd["log_gain"],
        "gain_sd": np.sqrt(bwd["gain_var"]),
        "cum_log_gain": bwd["log_delta2"],
        **_cumulative(bwd["log_gain"], bwd["gain_var"]),
        "kappa": fwd["kappa"],
        "width": np.array([x.width for x in spec.layers], dtype=float),
        "sigma_w2": np.array([x.sigma_w2 for x in spec.layers]),
        "sigma_b2": np.array([x.sigma_b2 for x in spec.layers]),
    }
    fixed, act = _fixed(spec, fwd["q"])
    return Prediction(
        spec.names,
        values,
        input_var=input_var,
        flags=[x.not_predicted for x in spec.layers],
        fixed=fixed,
        layer_types=[x.layer_type for x in spec.layers],
        activation=act,
    )
