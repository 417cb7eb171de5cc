"""From a lab config to the theory: an Experiment's network as a NetworkSpec, from the lab's
init variances (no weights needed), and `predict_run` for a run directory's run.json.

sigma_w^2 = fan_in * Var(W) with Var(W) = `weight_variance(init, fan_in, fan_out)`;
sigma_b^2 from the bias rule: zeros 0, normal (Nielsen) 1, torch's U(+-1/sqrt(fan_in))
1 / (3 fan_in). Inits whose weights are not zero-mean random (uniform(0, 1),
scaled_identity) or constant non-zero biases are outside the mean-field theory.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gradprobe.lab.init import get_initialiser, weight_variance
from gradprobe.theory import LayerSpec, NetworkSpec, NotPredictedError, Prediction, predict


def bias_variance(init: str, bias_init, fan_in: int) -> float:
    """sigma_b^2 of a layer: the bias mode `bias_init` (None: the initialiser's own rule)."""
    mode = get_initialiser(init).bias if bias_init is None else bias_init
    if mode == "zeros":
        return 0.0
    if mode == "normal":  # N(0, 1): Nielsen's biases
        return 1.0
    if mode == "torch":  # nn.Linear.reset_parameters: U(+-1/sqrt(fan_in)), variance a^2 / 3
        return 1.0 / (3 * fan_in)
    if float(mode) == 0.0:
        return 0.0
    raise NotPredictedError(
        f"bias_init={mode!r} is a constant non-zero bias: pre-activations are not zero-mean, "
        "outside the mean-field theory (use zeros, normal or the init's own rule)"
    )


def layer_variances(init: str, fan_in: int, fan_out: int, *, gain=None, bias_init=None):
    """(sigma_w^2, sigma_b^2) of one Linear layer under the lab's initialiser `init`."""
    spec = get_initialiser(init)
    if spec.sampler == "identity":
        raise NotPredictedError(
            "init='scaled_identity' gives deterministic weights that mix no units: "
            "outside the mean-field theory"
        )
    if spec.sampler == "uniform":
        raise NotPredictedError(
            "init='uniform' draws non-zero-mean weights U(low, high): outside the "
            "mean-field theory, which needs zero-mean weights"
        )
    sigma_w2 = fan_in * weight_variance(init, fan_in, fan_out, gain=gain)
    return sigma_w2, bias_variance(init, bias_init, fan_in)


def lab_spec(
    activation: str,
    init: str,
    sizes: Sequence[int],
    *,
    model: str = "mlp",
    alpha: float = 1.0,
    norm: str | None = None,
    gain: float | None = None,
    bias_init=None,
    bias_var: float | None = None,
) -> NetworkSpec:
    """The NetworkSpec of a lab mlp (sizes [n_in, h1, ..., n_out]) or residual_mlp
    (sizes [n_in, width x depth, n_out]: inp, depth blocks, out) initialised by `init`.

    Args:
        activation: the hidden activation, one of the lab's ACTIVATIONS.
        init: one of the lab's INITIALISERS.
        sizes: layer sizes including input and output.
        model: "mlp" or "residual_mlp".
        alpha: residual branch scale.
        norm: None, "layer"; "batch" is not predicted.
        gain, bias_init: as for the lab's models.
        bias_var: overrides sigma_b^2 of every layer when given.

    Raises:
        NotPredictedError: BatchNorm, a recurrent model, or an init outside the theory.
    """
    if norm == "batch":
        raise NotPredictedError(
            "norm='batch': BatchNorm is not predicted (its gradient grows with depth at a "
            "batch-size dependent rate, Yang et al. 2019)"
        )
    if model not in ("mlp", "residual_mlp"):
        raise NotPredictedError(f"model={model!r}: only mlp and residual_mlp are predicted")
    fans = list(zip(sizes[:-1], sizes[1:]))
    if model == "residual_mlp":  # inp, one width x width block per hidden size, out
        fans = [(sizes[0], sizes[1]), *[(sizes[1], sizes[1])] * (len(sizes) - 2), fans[-1]]
    names, layers = _names(model, len(fans)), []
    for i, (fan_in, fan_out) in enumerate(fans):
        sigma_w2, sigma_b2 = layer_variances(init, fan_in, fan_out, gain=gain, bias_init=bias_init)
        hidden = i < len(fans) - 1 and (model == "mlp" or i > 0)
        layers.append(
            LayerSpec(
                names[i], sigma_w2, sigma_b2 if bias_var is None else bias_var,
                activation if hidden else None, fan_out, fan_in,
                norm="layer" if norm == "layer" and hidden else None,
                alpha=alpha if model == "residual_mlp" and hidden else None,
            )
        )  # fmt: skip
    return NetworkSpec(tuple(layers))


def _names(model: str, n: int) -> list[str]:
    if model == "mlp":
        return [f"fc{i + 1}" for i in range(n)]
    return ["inp", *(f"blocks.{i}.fc" for i in range(n - 2)), "out"]


def experiment_spec(exp, n_in: int, n_out: int) -> NetworkSpec:
    """The NetworkSpec of a lab `Experiment` with `n_in` input features and `n_out` outputs."""
    if exp.is_recurrent:
        raise NotPredictedError(f"model={exp.model!r}: recurrent nets are not predicted")
    sizes = list(exp.sizes) if exp.sizes else [n_in, *[exp.width] * exp.depth, n_out]
    return lab_spec(
        exp.activation, exp.init, sizes, model=exp.model, alpha=exp.alpha, norm=exp.norm,
        gain=exp.gain, bias_init=exp.bias_init,
    )  # fmt: skip


def _io_sizes(rec) -> tuple[int, int] | None:
    shapes = [info.get("weight_shapes") for info in rec.layer_info]
    if not shapes or not shapes[0] or not shapes[-1]:
        return None
    return int(shapes[0][0][1]), int(shapes[-1][0][0])


def _input_var(exp) -> float | None:
    """Mean square per feature of the run's training inputs, None if the data is not here."""
    from gradprobe.lab.build import load_data

    try:
        x = load_data(exp).x_train
    except (OSError, ValueError):
        return None
    return float(np.mean(np.square(np.asarray(x, dtype=float))))


def predict_run(record_or_run_dir, input_var: float | None = None) -> Prediction | None:
    """The prediction for a lab run from its run.json config, or None when the theory does
    not cover it (not a lab run, recurrent, BatchNorm, uniform / identity init).

    Args:
        record_or_run_dir: a Record or a run directory.
        input_var: mean square of the input features; None reads the run's dataset
            (1.0 when its files are not on this machine).
    """
    from gradprobe.lab.config import ConfigError, Experiment
    from gradprobe.record import load

    rec = (
        load(record_or_run_dir) if isinstance(record_or_run_dir, (str, Path)) else record_or_run_dir
    )
    config, io = rec.meta.get("config"), _io_sizes(rec)
    if not isinstance(config, dict) or io is None:
        return None
    try:
        exp = Experiment.from_dict(config)
        spec = experiment_spec(exp, *io)
    except (NotPredictedError, ConfigError, ValueError):
        return None
    if input_var is None:
        input_var = _input_var(exp) or 1.0
    return predict(spec, input_var=input_var)


def predict_config(
    activation: str,
    init: str,
    *,
    depth: int,
    width: int,
    n_in: int | None = None,
    n_out: int | None = None,
    model: str = "mlp",
    alpha: float = 1.0,
    norm: str | None = None,
    gain: float | None = None,
    bias_var: float | None = None,
    input_var: float = 1.0,
) -> Prediction:
    """The prediction for a lab network given by its settings (`gradprobe predict`).

    Args:
        activation, init, model, alpha, norm, gain: as in an Experiment.
        depth: hidden layers (residual_mlp: blocks), as Experiment.depth.
        width: units per hidden layer.
        n_in, n_out: input features and outputs (default: width).
        bias_var: sigma_b^2 of every layer (default: the init's bias rule).
        input_var: mean square of the input features.

    Raises:
        NotPredictedError: a configuration outside the theory. ValueError: bad values.
    """
    from gradprobe.lab.activations import check_activation

    check_activation(activation)
    for label, value in (("depth", depth), ("width", width), ("n_in", n_in), ("n_out", n_out)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ValueError(f"{label}={value!r} must be an int >= 1")
    sizes = [n_in or width, *[width] * depth, n_out or width]
    spec = lab_spec(
        activation, init, sizes, model=model, alpha=alpha, norm=norm, gain=gain, bias_var=bias_var
    )
    return predict(spec, input_var=input_var)
