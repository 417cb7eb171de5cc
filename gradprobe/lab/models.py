"""The classic deep networks: MLPs of any depth, residual MLPs, recurrent classifiers.

Layer names are what users of a record read (`fc1`..`fcL`, `blocks.0.fc`, `rnn`, `head`),
so they are fixed here.
"""

from __future__ import annotations

import numbers
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from gradprobe.lab.activations import activation_defaults, check_activation, make_activation
from gradprobe.lab.init import get_initialiser, init_model_

NORMS: tuple[str, ...] = ("batch", "layer")
RECURRENT_KINDS: tuple[str, ...] = ("rnn", "lstm", "gru")


def _check_positive_ints(**values) -> None:
    for label, value in values.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{label}={value!r} must be an int >= 1")


def _check_norm(norm: str | None) -> str | None:
    """None and "none" mean no normalisation; otherwise one of `NORMS`."""
    if norm is None or norm == "none":
        return None
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r} is not one of: none, {', '.join(NORMS)}")
    return norm


def _make_norm(norm: str, width: int) -> nn.Module:
    return nn.BatchNorm1d(width) if norm == "batch" else nn.LayerNorm(width)


def depth_to_sizes(n_in: int, depth: int, width: int, n_out: int) -> list[int]:
    """Layer sizes of an MLP with `depth` hidden layers of `width` units.

    Args:
        n_in: input features.
        depth: number of hidden layers (>= 1).
        width: units per hidden layer (>= 1).
        n_out: outputs.

    Returns:
        [n_in, width, ..., width, n_out], a list of depth + 2 ints.
    """
    _check_positive_ints(n_in=n_in, depth=depth, width=width, n_out=n_out)
    return [int(n_in), *([int(width)] * int(depth)), int(n_out)]


def _check_sizes(sizes: Sequence[int]) -> list[int]:
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError(f"sizes={sizes!r} needs at least [n_in, n_out]")
    _check_positive_ints(**{f"sizes[{i}]": n for i, n in enumerate(sizes)})
    return [int(n) for n in sizes]


def _hidden_activations(activation: str, activations, n_hidden: int) -> list[str]:
    if activations is None:
        return [check_activation(activation)] * n_hidden
    activations = list(activations)
    if len(activations) != n_hidden:
        raise ValueError(
            f"activations has {len(activations)} entries; need one per hidden layer "
            f"({n_hidden} for these sizes)"
        )
    return [check_activation(a) for a in activations]


def _params_for(names: list[str], params: dict) -> list[dict]:
    """Per activation, the entries of `params` it accepts; a key none accepts is an error."""
    accepted = [set(activation_defaults(n)) for n in names]
    unused = sorted(set(params) - set().union(*accepted))
    if unused:
        raise ValueError(
            f"activation_params {', '.join(unused)} apply to none of the activations "
            f"{', '.join(sorted(set(names)))}"
        )
    return [{k: v for k, v in params.items() if k in keys} for keys in accepted]


def mlp(
    sizes: Sequence[int],
    activation: str = "sigmoid",
    init: str = "nielsen",
    *,
    activations: Sequence[str] | None = None,
    output_activation: str | None = None,
    norm: str | None = None,
    gain: float | None = None,
    bias_init: str | float | None = None,
    activation_params: dict | None = None,
    init_params: dict | None = None,
    generator: torch.Generator | None = None,
) -> nn.Sequential:
    """A fully connected network, Nielsen's `Network(sizes)` in torch.

    Modules, in order: fc1, [norm1], act1, fc2, ..., fcL, [out_act]. Norms sit on the
    pre-activations (between fc and act); the output layer fcL has none.

    Args:
        sizes: [n_in, h1, ..., n_out], at least two ints >= 1.
        activation: hidden activation, one of `ACTIVATIONS`.
        init: initialiser applied to every Linear, one of `INITIALISERS`.
        activations: per-hidden-layer override, one name per hidden layer.
        output_activation: an activation after fcL (e.g. "sigmoid" for Nielsen's
            quadratic-cost output); None or "none" for raw outputs (logits).
        norm: None / "none", "batch" (BatchNorm1d) or "layer" (LayerNorm).
        gain: multiplies the initial weights' standard deviation.
        bias_init: None (the initialiser's convention), "zeros", "normal" or a float.
        activation_params: keyword parameters for the hidden activations, each given to
            those that accept it (e.g. {"slope": 0.1} for leaky_relu layers).
        init_params: the initialiser's own parameters (e.g. {"g": 0.8}).
        generator: draw the initial weights from this generator.

    Returns:
        nn.Sequential mapping (B, n_in) to (B, n_out).
    """
    sizes = _check_sizes(sizes)
    acts = _hidden_activations(activation, activations, len(sizes) - 2)
    norm = _check_norm(norm)
    get_initialiser(init)
    act_params = _params_for(acts, activation_params or {}) if acts else []
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        layers[f"fc{i}"] = nn.Linear(n_in, n_out)
        if i == len(sizes) - 1:
            break
        if norm is not None:
            layers[f"norm{i}"] = _make_norm(norm, n_out)
        layers[f"act{i}"] = make_activation(acts[i - 1], **act_params[i - 1])
    if output_activation is not None and output_activation != "none":
        layers["out_act"] = make_activation(check_activation(output_activation))
    model = nn.Sequential(layers)
    kwargs = dict(gain=gain, bias=bias_init, generator=generator, **(init_params or {}))
    return init_model_(model, init, **kwargs)


class ResidualBlock(nn.Module):
    """y = x + alpha * act(norm(fc(x))), one Linear per block.

    Args:
        width: features in and out.
        alpha: branch scale (1 / sqrt(depth) keeps the gradient bounded, THEORY.md).
        activation: one of `ACTIVATIONS`.
        norm: None, "batch" or "layer", on the branch's pre-activation.
    """

    def __init__(self, width: int, alpha: float, activation: str, norm: str | None):
        super().__init__()
        self.alpha = float(alpha)
        self.fc = nn.Linear(width, width)
        self.norm = _make_norm(norm, width) if norm is not None else nn.Identity()
        self.act = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.alpha * self.act(self.norm(self.fc(x)))  # (B, width)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha:g}"


class ResidualMLP(nn.Module):
    """inp -> blocks.0 ... blocks.{depth-1} -> out (see `residual_mlp`)."""

    def __init__(self, blocks: list[ResidualBlock], in_features: int, out_features: int):
        super().__init__()
        width = blocks[0].fc.in_features
        self.inp = nn.Linear(in_features, width)
        self.blocks = nn.ModuleList(blocks)
        self.out = nn.Linear(width, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)  # (B, width)
        for block in self.blocks:
            h = block(h)
        return self.out(h)  # (B, out_features)


def residual_mlp(
    depth: int,
    width: int,
    *,
    in_features: int,
    out_features: int,
    alpha: float = 1.0,
    activation: str = "relu",
    init: str = "he_normal",
    norm: str | None = None,
    gain: float | None = None,
    bias_init: str | float | None = None,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """A residual MLP: input projection, `depth` blocks y = x + alpha act(fc(x)), output layer.

    Args:
        depth: number of residual blocks (>= 1).
        width: features inside the residual stream (>= 1).
        in_features: input features.
        out_features: outputs.
        alpha: branch scale.
        activation: one of `ACTIVATIONS`.
        init: initialiser for every Linear (inp, blocks.*.fc, out).
        norm: None / "none", "batch" or "layer", on each branch's pre-activation.
        gain: multiplies the initial weights' standard deviation.
        bias_init: None (the initialiser's convention), "zeros", "normal" or a float.
        generator: draw the initial weights from this generator.

    Returns:
        `ResidualMLP` mapping (B, in_features) to (B, out_features); layers named inp,
        blocks.0.fc, ..., out.
    """
    _check_positive_ints(
        depth=depth, width=width, in_features=in_features, out_features=out_features
    )
    check_activation(activation)
    get_initialiser(init)
    norm = _check_norm(norm)
    blocks = [ResidualBlock(width, alpha, activation, norm) for _ in range(depth)]
    model = ResidualMLP(blocks, in_features, out_features)
    return init_model_(model, init, gain=gain, bias=bias_init, generator=generator)


READOUTS = ("last", "all")  # the last step's hidden state, or every step's (copy_memory)


class RecurrentClassifier(nn.Module):
    """rnn over (B, T, F) sequences, then `head` on the last step's hidden state
    (readout="last") or on every step's (readout="all", for a target at every step)."""

    def __init__(self, rnn: nn.RNNBase, n_outputs: int, readout: str = "last"):
        super().__init__()
        if readout not in READOUTS:
            raise ValueError(f"readout={readout!r} is not one of: {', '.join(READOUTS)}")
        self.rnn = rnn
        self.head = nn.Linear(rnn.hidden_size, n_outputs)
        self.readout = readout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3:
            raise ValueError(f"expected input of shape (B, T, F), got {tuple(x.shape)}")
        out, _ = self.rnn(x)  # (B, T, H)
        if self.readout == "all":
            return self.head(out)  # (B, T, n_outputs)
        return self.head(out[:, -1])  # (B, n_outputs)

    def extra_repr(self) -> str:
        return f"readout={self.readout!r}"


def recurrent(
    kind: str,
    input_size: int,
    hidden_size: int,
    n_outputs: int,
    *,
    nonlinearity: str = "tanh",
    num_layers: int = 1,
    init: str | None = None,
    gain: float | None = None,
    bias_init: str | float | None = None,
    head_init: str | None = None,
    readout: str = "last",
    generator: torch.Generator | None = None,
) -> nn.Module:
    """A recurrent classifier / regressor for sequence tasks.

    Args:
        kind: "rnn" (Elman), "lstm" or "gru".
        input_size: features per time step.
        hidden_size: hidden units.
        n_outputs: outputs of the head.
        nonlinearity: "tanh" or "relu", for kind="rnn" only.
        num_layers: stacked recurrent layers.
        init: None keeps torch's default init; otherwise an initialiser applied per gate
            block to the recurrent matrices (and to the head, unless `head_init` is given).
        head_init: initialiser for the head; None means `init`, except for
            "scaled_identity" (square matrices only), where the head keeps torch's default.
        gain: multiplies the initial weights' standard deviation (with `init`).
        bias_init: bias mode (with `init`).
        readout: "last" reads the last step's hidden state; "all" applies the head at
            every step, output (B, T, n_outputs), for tasks with a target per step.
        generator: draw the initial weights from this generator (with `init`).

    Returns:
        `RecurrentClassifier` mapping (B, T, input_size) to (B, n_outputs) (or
        (B, T, n_outputs) with readout="all"); attributes `rnn` and `head`.
    """
    if kind not in RECURRENT_KINDS:
        raise ValueError(f"kind={kind!r} is not one of: {', '.join(RECURRENT_KINDS)}")
    if nonlinearity not in ("tanh", "relu") or (kind != "rnn" and nonlinearity != "tanh"):
        allowed = "tanh, relu" if kind == "rnn" else "tanh (its gates are fixed)"
        raise ValueError(f"nonlinearity={nonlinearity!r} for kind={kind!r}; allowed: {allowed}")
    _check_positive_ints(
        input_size=input_size, hidden_size=hidden_size, n_outputs=n_outputs, num_layers=num_layers
    )
    common = dict(num_layers=num_layers, batch_first=True)
    if kind == "rnn":
        rnn = nn.RNN(input_size, hidden_size, nonlinearity=nonlinearity, **common)
    else:
        rnn = (nn.LSTM if kind == "lstm" else nn.GRU)(input_size, hidden_size, **common)
    if init is None and (gain is not None or bias_init is not None):
        raise ValueError(f"gain={gain!r} / bias_init={bias_init!r} need an init; init is None")
    model = RecurrentClassifier(rnn, n_outputs, readout)
    if head_init is None and init != "scaled_identity":
        head_init = init
    for module, name in ((model.rnn, init), (model.head, head_init)):
        if name is not None:
            init_model_(module, name, gain=gain, bias=bias_init, generator=generator)
    return model
