"""Losses by name, with the predictions and accuracy that go with each.

All losses are means over the batch, so the gradient scale does not depend on the batch size
(Nielsen's C = 1/n sum_x C_x).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LOSSES: tuple[str, ...] = ("cross_entropy", "quadratic", "bce", "mse")

# A sequence of the adding problem counts as solved when |prediction - target| < 0.04
# (Hochreiter & Schmidhuber 1997, "Long Short-Term Memory", section 5.4).
ADDING_TOLERANCE = 0.04


def check_loss(name: str) -> str:
    """Return `name` if it is one of `LOSSES`; ValueError listing them otherwise."""
    if not isinstance(name, str) or name not in LOSSES:
        raise ValueError(f"loss={name!r} is not one of: {', '.join(LOSSES)}")
    return name


def _as_column_target(outputs: torch.Tensor, targets: torch.Tensor, loss: str) -> torch.Tensor:
    """Float targets shaped like `outputs` (B, k) from (B,) or (B, k)."""
    given = tuple(targets.shape)
    targets = targets.to(outputs.dtype)
    if targets.dim() == 1 and outputs.dim() == 2 and outputs.shape[1] == 1:
        targets = targets.unsqueeze(1)  # (B, 1)
    if targets.shape != outputs.shape:
        raise ValueError(
            f"{loss}: targets of shape {given} do not match outputs of shape {tuple(outputs.shape)}"
        )
    return targets


class Loss(nn.Module):
    """Base of the named losses: `loss(outputs, targets) -> scalar tensor`."""

    name = ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class CrossEntropy(Loss):
    """-log softmax(z)_y from logits z of shape (B, C), int64 targets (B,); mean over B.

    F.cross_entropy works through log_softmax (log-sum-exp shifted by the max logit), so it
    stays finite for logits of any size.
    """

    name = "cross_entropy"

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if outputs.dim() == 3 and targets.dim() == 2:  # a class per time step: (B, T, C)
            outputs, targets = outputs.flatten(0, 1), targets.flatten()
        if outputs.dim() != 2 or outputs.shape[1] < 2:
            raise ValueError(
                f"cross_entropy needs logits of shape (B, C) with C >= 2, got "
                f"{tuple(outputs.shape)}; for one output unit use loss='bce'"
            )
        if targets.dtype.is_floating_point:
            raise ValueError(
                f"cross_entropy needs integer class indices of shape (B,), got {targets.dtype}"
            )
        return F.cross_entropy(outputs, targets.long())


class Quadratic(Loss):
    """Nielsen's quadratic cost C = 1/(2n) sum_x ||a(x) - y(x)||^2, y one-hot.

    For outputs of width 1 the target is the label itself (0. / 1.); float targets already
    shaped like the outputs are used as they are.
    """

    name = "quadratic"

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if outputs.dim() == 1:
            outputs = outputs.unsqueeze(1)  # (B, 1): one output unit per example
        wide = outputs.shape[1] > 1
        if wide and not targets.dtype.is_floating_point:
            y = F.one_hot(targets.long(), outputs.shape[1]).to(outputs.dtype)  # (B, k)
        else:
            y = _as_column_target(outputs, targets, self.name)
        return 0.5 * (outputs - y).square().sum(dim=-1).mean()


class BCE(Loss):
    """Binary cross-entropy from logits z: -[y log s(z) + (1 - y) log(1 - s(z))], mean.

    BCEWithLogits uses the log-sum-exp form max(z, 0) - z y + log(1 + e^-|z|): finite for
    any z. Outputs of shape (B, 1) or (B,), targets 0/1 of shape (B,).
    """

    name = "bce"

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        y = _as_column_target(outputs, targets, self.name)
        return F.binary_cross_entropy_with_logits(outputs, y)


class MSE(Loss):
    """Mean squared error over batch and outputs, for regression (the adding problem)."""

    name = "mse"

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(outputs, _as_column_target(outputs, targets, self.name))


_CLASSES = {cls.name: cls for cls in (CrossEntropy, Quadratic, BCE, MSE)}


def make_loss(name: str) -> Loss:
    """The loss module called `name` (one of `LOSSES`); call it as loss(outputs, targets)."""
    return _CLASSES[check_loss(name)]()


def predictions(outputs: torch.Tensor, loss_name: str) -> torch.Tensor:
    """What the network predicts, given the loss it was trained with.

    Args:
        outputs: array of shape (B, k) or (B,), the network's outputs.
        loss_name: one of `LOSSES`.

    Returns:
        int64 class indices of shape (B,): argmax over k > 1 outputs; for one output,
        logit > 0 (bce) or activation > 0.5 (quadratic, sigmoid output). For mse, the outputs
        themselves, squeezed to (B,) when k = 1.
    """
    check_loss(loss_name)
    if outputs.dim() == 3 and loss_name == "cross_entropy":  # (B, T, C): a class per step
        return outputs.argmax(dim=-1)
    single = outputs.dim() == 1 or outputs.shape[1] == 1
    if loss_name == "mse":
        return outputs.squeeze(1) if outputs.dim() == 2 and single else outputs
    if not single:
        return outputs.argmax(dim=1)
    if loss_name == "cross_entropy":
        raise ValueError("cross_entropy needs at least two outputs; got one")
    threshold = 0.0 if loss_name == "bce" else 0.5  # logit 0 = probability 1/2
    return (outputs.reshape(-1) > threshold).long()


def accuracy(
    outputs: torch.Tensor,
    targets: torch.Tensor,
    loss_name: str,
    *,
    tolerance: float = ADDING_TOLERANCE,
) -> float:
    """Fraction of correct predictions.

    Args:
        outputs: array of shape (B, k) or (B,).
        targets: class indices (B,) (or 0/1 labels), or regression targets for mse.
        loss_name: one of `LOSSES`.
        tolerance: for mse, a prediction within this absolute error of every target counts
            as correct (Hochreiter & Schmidhuber 1997's 0.04 for the adding problem).

    Returns:
        A float in [0, 1]. Reads one number back from the device.
    """
    pred = predictions(outputs, loss_name)
    if loss_name == "mse":
        err = (pred - targets.to(pred.dtype).reshape(pred.shape)).abs()
        correct = (err < tolerance).reshape(len(err), -1).all(dim=1)
    else:
        correct = pred.reshape(-1) == targets.reshape(-1).long()
    return float(correct.float().mean())
