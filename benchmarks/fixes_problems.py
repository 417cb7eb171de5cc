"""The bad cases of the pathology benchmark as fix problems: for each, a factory (from
fixes_models.py) that rebuilds the case's model, its data, loss and optimizer.

The factories of the plain MLP cases take the architecture options (`activation`,
`norm`, `residual_alpha`), as a user's factory may; the recurrent and linear ones take
none, so only the automatic remedies run there. At-init cases of the pathology benchmark
(which make no update) are trained here with SGD at lr 0.01, momentum 0.9.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F

from benchmarks.fixes_models import Linear, Net, Seq
from benchmarks.pathologies.cases_lint import mse_one_hot
from benchmarks.pathologies.cases_training import naive_log_softmax_loss
from benchmarks.pathologies.data import digits, first_token_task, regression


def sgd(lr: float, momentum: float = 0.9):
    return partial(torch.optim.SGD, lr=lr, momentum=momentum)


W64 = (64,)
CE = F.cross_entropy
# name -> (factory, data, loss_fn, optimizer), as in cases_*.py
PROBLEMS = {
    "sigmoid_deep_nielsen": (Net((64, *[30] * 8, 10), "sigmoid", 1.0, bias_std=1.0),
                             digits(seed=1), CE, sgd(0.05)),
    "sigmoid_deep_default": (Net((64, *[64] * 8, 10), "sigmoid"), digits(seed=2), CE, sgd(0.05)),
    "tanh_small_init": (Net((64, *[64] * 10, 10), "tanh", 0.25), digits(seed=3), CE, sgd(0.01)),
    "tanh_deep_lecun": (Net((64, *[64] * 50, 10), "tanh", 1.0, bias_std=0.05**0.5),
                        digits(seed=4), CE, sgd(0.05)),
    "relu_large_init": (Net((64, *[64] * 16, 10), "relu", 6.0), digits(seed=5), CE, sgd(0.01)),
    "relu_bn_50": (Net((64, *[64] * 50, 10), "relu", "he", bias=False, norm="batch"),
                   digits(seed=6), CE, sgd(0.01)),
    "tanh_chaotic": (Net((64, *[64] * 20, 10), "tanh", 25.0), digits(seed=7), CE, sgd(0.01)),
    "relu_dead_bias": (Net((64, *[64] * 4, 10), "relu", 2.0, first_bias=-4.0),
                       digits(seed=8), CE, sgd(0.05)),
    "relu_dead_after_spike": (Net((64, *[64] * 4, 10), "relu", 2.0, spike_seed=12),
                              digits(seed=12), CE, sgd(0.01)),
    "sigmoid_inputs_x100": (Net((64, 30, 30, 10), "sigmoid"), digits(scale=100.0, seed=9), CE,
                            sgd(0.05)),
    "tanh_inputs_x100": (Net((64, 30, 30, 10), "tanh"), digits(scale=100.0, seed=10), CE,
                         sgd(0.01)),
    "tanh_inputs_x1": (Net((64, 64, 10), "tanh"), digits(scale=1.0, seed=11), CE, sgd(0.05)),
    "lr_too_large_nan": (Net((64, 64, 64, 10), "relu", 2.0), digits(seed=21), CE,
                         sgd(10.0, 0.0)),
    "lr_too_large_tanh": (Net((64, 64, 64, 10), "tanh", 1.0), digits(seed=21), CE,
                          sgd(10.0, 0.0)),
    "lr_too_large_linear": (Linear(), regression(seed=23), F.mse_loss, sgd(0.8, 0.0)),
    "lr_too_small_sgd": (Net((64, 64, 64, 10), "relu", 2.0), digits(seed=25), CE, sgd(1e-6)),
    "lr_too_small_adam": (Net((64, 64, 64, 10), "tanh", 1.0), digits(seed=27), CE,
                          partial(torch.optim.Adam, lr=1e-7)),
    "log_softmax_nan": (Net((64, 64, 10), "relu", 2.0, last_scale=1000.0), digits(seed=29),
                        naive_log_softmax_loss, sgd(0.01)),
    "exp_overflow": (Net((64, 32, 10), "exp"), digits(scale=10.0, seed=31), CE, sgd(0.01)),
    "mse_softmax": (Net((64, 64, 10), "relu", 2.0, head="softmax"), digits(seed=41),
                    mse_one_hot, sgd(0.5)),
    "mse_sigmoid": (Net((64, 30, 10), "sigmoid", 1.0, head="sigmoid"), digits(seed=43),
                    mse_one_hot, sgd(1.0)),
    "double_softmax": (Net((64, 64, 10), "relu", 2.0, head="softmax"), digits(seed=45), CE,
                       sgd(0.1)),
    "log_softmax_then_ce": (Net((64, 64, 10), "relu", 2.0, head="log_softmax"),
                            digits(seed=47), CE, sgd(0.01)),
    "log_softmax_explicit": (Net((64, 64, 10), "relu", 2.0), digits(seed=49),
                             naive_log_softmax_loss, sgd(0.01)),
    "rnn_vanish_time": (Seq("rnn", 0.6), first_token_task(40, seed=50), CE, sgd(0.01)),
    "rnn_explode_time": (Seq("rnn", 2.5), first_token_task(40, seed=51), CE, sgd(0.01)),
    "lstm_vanish_time": (Seq("lstm", 1.0, -3.0), first_token_task(40, seed=52), CE, sgd(0.01)),
}  # fmt: skip
