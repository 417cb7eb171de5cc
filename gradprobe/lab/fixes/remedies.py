"""The catalogue of remedies: for each, the finding kinds it addresses, the Plan it makes
for a model, whether it applies to any nn.Module, and the code to apply it by hand.

Automatic remedies (init rescaling, forget-gate bias, gradient clipping, learning rate,
loss change) are applied to any model; the others change the architecture and are applied
only where the factory accepts the option (`activation`, `norm`, `residual_alpha`) or to
lab runs, and are otherwise suggested with their snippet.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from gradprobe.lab.fixes.context import RELU_FAMILY, SQUASHING, Context
from gradprobe.lab.fixes.plan import Plan

# What a remedy restores the update ratio ||dW|| / ||W|| to: "somewhere around 1e-3"
# (Karpathy, CS231n "Neural Networks Part 3"), the diagnosis' own healthy value.
HEALTHY_UPDATE = 1e-3
# Global gradient-norm threshold for clipping: Pascanu, Mikolov & Bengio 2013 clip at
# about the typical norm; 1.0 is the common default (Hugging Face Trainer max_grad_norm).
CLIP_NORM = 1.0
# Learning-rate factor when no update ratio was measured: one decade (Bengio 2012,
# "Practical recommendations", searches the learning rate on a log scale).
LR_DECADE = 10.0
# Bounds on an evidence-driven learning-rate factor: four decades either way.
LR_FACTOR_RANGE = (1e-4, 1e4)
# LSTM forget-gate bias: 1 (Gers, Schmidhuber & Cummins 2000; Jozefowicz et al. 2015).
FORGET_BIAS = 1.0

DEPTH_KINDS = ("vanishing_gradient", "exploding_gradient")
TIME_KINDS = ("vanishing_gradient@time", "exploding_gradient@time")


@dataclass(frozen=True)
class Remedy:
    """One remedy.

    Attributes:
        name: short id, e.g. "relu_he".
        kinds: the findings it addresses, as keys: the kind, "@time" added for a
            finding along the time steps of a recurrent layer.
        automatic: applies to any nn.Module (init, clipping, learning rate, loss);
            False: needs a factory option or a lab run.
        make: Context -> Plan, or None where it does not fit the model.
        snippet: the code that applies it by hand.
        source: where it comes from.
    """

    name: str
    kinds: tuple[str, ...]
    automatic: bool
    make: Callable[[Context], Plan | None]
    snippet: str
    source: str

    def plan(self, ctx: Context) -> Plan | None:
        return self.make(ctx)

    def __repr__(self) -> str:
        how = "automatic" if self.automatic else "needs a factory option"
        return f"Remedy({self.name!r}, kinds={list(self.kinds)}, {how})"


def _swap(activation: str, init: str):
    def make(ctx: Context) -> Plan | None:
        if ctx.activation == activation:
            return None
        return Plan(options=(("activation", activation),), init=(init, 1.0))

    return make


def _init(rule: str, fits: Callable[[str | None], bool]):
    def make(ctx: Context) -> Plan | None:
        return Plan(init=(rule, 1.0)) if fits(ctx.activation) else None

    return make


def _orthogonal(ctx: Context) -> Plan:
    # gain sqrt(2) for the ReLU family, as torch.nn.init.calculate_gain("relu")
    return Plan(init=("orthogonal", math.sqrt(2.0) if ctx.activation in RELU_FAMILY else 1.0))


def _critical(ctx: Context) -> Plan | None:
    if ctx.activation is None:  # no activation module the theory can name
        return None
    from gradprobe.theory import critical_init

    try:
        sigma_w2 = float(critical_init(ctx.activation, bias_var=0.0))
    except ValueError:  # an activation the theory has no edge of chaos for
        return None
    return Plan(init=("critical", sigma_w2)) if math.isfinite(sigma_w2) and sigma_w2 > 0 else None


def _norm(kind: str):
    def make(ctx: Context) -> Plan | None:
        return None if kind in ctx.norms else Plan(options=(("norm", kind),))

    return make


def _chrono(ctx: Context) -> Plan | None:
    if not ctx.has_lstm or ctx.seq_len is None or ctx.seq_len < 3:
        return None
    return Plan(forget_bias=("chrono", float(ctx.seq_len)))


def _forget_horizon(ctx: Context) -> Plan | None:
    # A gate sigma(b) forgets with time scale 1 / (1 - sigma(b)) = 1 + e^b steps (Tallec &
    # Ollivier 2018, sec. 3), so b = ln(T - 1) gives every unit the task's horizon T: chrono
    # init's longest time scale, for all units, with the input gate left open.
    if not ctx.has_lstm or ctx.seq_len is None or ctx.seq_len < 3:
        return None
    return Plan(forget_bias=("constant", math.log(ctx.seq_len - 1)))


def _rnn_isometry(ctx: Context) -> Plan | None:
    if not ctx.has_tanh_rnn:
        return None
    # gain sqrt(2) for the other layers of a ReLU-family model, as _orthogonal
    return Plan(init=("rnn_isometry", math.sqrt(2.0) if ctx.activation in RELU_FAMILY else 1.0))


def _residual(ctx: Context) -> Plan | None:
    # alpha = 1/sqrt(L) keeps the backward gain (1 + alpha^2 chi)^L bounded (THEORY.md)
    return Plan(options=(("residual_alpha", 1.0 / math.sqrt(max(ctx.depth, 1))),))


def _lr_to_target(ctx: Context) -> Plan | None:
    ratio = ctx.update_ratio()
    if ratio is None:
        return None
    low, high = LR_FACTOR_RANGE
    return Plan(lr_factor=min(max(HEALTHY_UPDATE / ratio, low), high))


def _loss_change(ctx: Context) -> Plan | None:
    if not ctx.classification:
        return None
    return Plan(strip_head=ctx.head is not None, loss="cross_entropy")


_R = Remedy
# fmt: off
CATALOGUE: tuple[Remedy, ...] = (
    _R("cross_entropy", ("lint_mse_for_classification", "lint_double_softmax",
                         "lint_unstable_log_softmax"), True,
       _loss_change,
       "# drop the final nn.Softmax / nn.Sigmoid; train on the logits\n"
       "loss = torch.nn.functional.cross_entropy(logits, y)",
       "Nielsen ch. 3 (cross-entropy cancels sigma'(z)); torch CrossEntropyLoss takes logits"),
    _R("relu_he", (*DEPTH_KINDS, "saturation", "loss_plateau", "nonfinite"), False,
       _swap("relu", "he_normal"),
       "nn.ReLU() in place of nn.Sigmoid() / nn.Tanh();\n"
       "nn.init.kaiming_normal_(layer.weight, nonlinearity='relu'); nn.init.zeros_(layer.bias)",
       "Glorot, Bordes & Bengio 2011 (ReLU); He et al. 2015, arXiv:1502.01852"),
    _R("leaky_relu_he", (*DEPTH_KINDS, "dead_units", "saturation"), False,
       _swap("leaky_relu", "he_normal"),
       "nn.LeakyReLU(0.01) in place of the activation;\n"
       "nn.init.kaiming_normal_(layer.weight, a=0.01, nonlinearity='leaky_relu')",
       "Maas, Hannun & Ng 2013 (leaky ReLU); He et al. 2015"),
    _R("he_init", (*DEPTH_KINDS, "dead_units"), True,
       _init("he_normal", lambda a: a in RELU_FAMILY),
       "nn.init.kaiming_normal_(layer.weight, nonlinearity='relu'); nn.init.zeros_(layer.bias)",
       "He et al. 2015, arXiv:1502.01852, eq. 10"),
    _R("glorot_init", (*DEPTH_KINDS, "saturation"), True,
       _init("glorot_normal", lambda a: a not in RELU_FAMILY),
       "nn.init.xavier_normal_(layer.weight); nn.init.zeros_(layer.bias)",
       "Glorot & Bengio 2010, eq. 16"),
    _R("orthogonal_init", (*DEPTH_KINDS, *TIME_KINDS), True, _orthogonal,
       "nn.init.orthogonal_(layer.weight, gain=nn.init.calculate_gain(act))",
       "Saxe, McClelland & Ganguli 2013, arXiv:1312.6120"),
    _R("critical_init", (*DEPTH_KINDS, "saturation"), True, _critical,
       "sigma_w2 = gradprobe.theory.critical_init(act)\n"
       "nn.init.normal_(layer.weight, 0, (sigma_w2 / layer.in_features) ** 0.5)",
       "Poole et al. 2016; Schoenholz et al. 2017 (edge of chaos, chi_1 = 1)"),
    _R("lsuv_init", (*DEPTH_KINDS, *TIME_KINDS, "saturation", "nonfinite", "dead_units"), True,
       _init("lsuv", lambda a: True),
       "orthogonal init, then per layer: weight *= (1 / output.var()) ** 0.5 on one batch",
       "Mishkin & Matas 2016, arXiv:1511.06422 (LSUV)"),
    _R("chrono_init", ("vanishing_gradient@time",), True, _chrono,
       "T = seq_len; u = torch.rand(H) * (T - 2) + 1\n"
       "lstm.bias_ih_l0.data[H:2*H] = u.log(); lstm.bias_ih_l0.data[:H] = -u.log()",
       "Tallec & Ollivier 2018, 'Can recurrent neural networks warp time?' (chrono init)"),
    _R("forget_bias", ("vanishing_gradient@time",), True,
       lambda ctx: Plan(forget_bias=("constant", FORGET_BIAS)) if ctx.has_lstm else None,
       "lstm.bias_ih_l0.data[H:2*H] = 1.0; lstm.bias_hh_l0.data[H:2*H] = 0.0",
       "Gers, Schmidhuber & Cummins 2000; Jozefowicz, Zaremba & Sutskever 2015"),
    _R("forget_bias_horizon", ("vanishing_gradient@time",), True, _forget_horizon,
       "T = seq_len  # the steps the loss must remember across\n"
       "lstm.bias_ih_l0.data[H:2*H] = math.log(T - 1); lstm.bias_hh_l0.data[H:2*H] = 0.0",
       "Tallec & Ollivier 2018 sec. 3 (forget time 1 + e^b); Gers et al. 2000 (b > 0)"),
    _R("rnn_isometry", TIME_KINDS, True, _rnn_isometry,
       "nn.init.orthogonal_(rnn.weight_hh_l0)  # every singular value 1\n"
       "nn.init.orthogonal_(rnn.weight_ih_l0); then scale weight_ih so h.var() = 1 / T",
       "Saxe et al. 2014 (orthogonal, isometry); Le, Jaitly & Hinton 2015 (W_hh radius 1, "
       "small inputs keep tanh linear)"),
    _R("batch_norm", (*DEPTH_KINDS, "saturation"), False,
       _norm("batch"),
       "nn.BatchNorm1d(width) between each nn.Linear and its activation",
       "Ioffe & Szegedy 2015, arXiv:1502.03167"),
    _R("layer_norm", (*DEPTH_KINDS, "saturation"), False,
       _norm("layer"),
       "nn.LayerNorm(width) between each nn.Linear and its activation",
       "Ba, Kiros & Hinton 2016, arXiv:1607.06450"),
    _R("residual", DEPTH_KINDS, False, _residual,
       "h = h + alpha * act(fc(h)) per block, alpha = 1 / sqrt(n_blocks)",
       "He et al. 2016; Hanin & Rolnick 2018 (branch scale 1/sqrt(depth))"),
    _R("lr_to_target", ("update_too_large", "update_too_small", "loss_divergence",
                        "loss_plateau", "nonfinite"), True, _lr_to_target,
       "for g in opt.param_groups: g['lr'] *= factor  # update ratio toward 1e-3",
       "CS231n 'Neural Networks Part 3': update ratio around 1e-3"),
    _R("lr_down", ("loss_divergence", "update_too_large", "nonfinite", "exploding_gradient"),
       True, lambda ctx: Plan(lr_factor=1 / LR_DECADE),
       "for g in opt.param_groups: g['lr'] /= 10",
       "Bengio 2012, 'Practical recommendations' (log-scale learning-rate search)"),
    _R("lr_up", ("update_too_small", "loss_plateau"), True,
       lambda ctx: Plan(lr_factor=LR_DECADE),
       "for g in opt.param_groups: g['lr'] *= 10",
       "Bengio 2012, 'Practical recommendations' (log-scale learning-rate search)"),
    _R("clip_grad", ("exploding_gradient", "exploding_gradient@time", "loss_divergence",
                     "nonfinite", "update_too_large"), True, lambda ctx: Plan(clip_norm=CLIP_NORM),
       "torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # before opt.step()",
       "Pascanu, Mikolov & Bengio 2013, arXiv:1211.5063"),
)
# fmt: on
BY_NAME = {r.name: r for r in CATALOGUE}
ORDER = {r.name: i for i, r in enumerate(CATALOGUE)}  # the fixed tie-break of the ranking
__all__ = ["BY_NAME", "CATALOGUE", "ORDER", "Remedy", "SQUASHING"]
