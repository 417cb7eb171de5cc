"""Losses against hand formulas and torch's reference losses; predictions and accuracy."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gradprobe.lab.losses import LOSSES, accuracy, make_loss, predictions

LOGITS = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, 0.3], [-3.0, 4.0, 1.0]], dtype=torch.float64)
CLASSES = torch.tensor([0, 2, 1])


def test_cross_entropy_hand_and_torch():
    hand = -sum(
        LOGITS[i, int(c)] - math.log(sum(math.exp(v) for v in LOGITS[i].tolist()))
        for i, c in enumerate(CLASSES)
    ) / len(CLASSES)
    loss = make_loss("cross_entropy")(LOGITS, CLASSES)
    assert float(loss) == pytest.approx(float(hand), rel=1e-12)
    torch.testing.assert_close(loss, nn.CrossEntropyLoss()(LOGITS, CLASSES))


def test_cross_entropy_huge_logits_stay_finite():
    logits = torch.tensor([[1e4, 0.0, -1e4], [-1e30, 1e30, 0.0]], requires_grad=True)
    loss = make_loss("cross_entropy")(logits, torch.tensor([1, 1]))
    assert loss.item() == pytest.approx(1e4 / 2)  # first row: 1e4 - 0; second row: 0
    loss.backward()
    assert bool(torch.isfinite(logits.grad).all())


def test_quadratic_is_nielsens_cost_on_one_hot():
    a = torch.sigmoid(LOGITS)
    y = torch.zeros(3, 3, dtype=torch.float64)
    y[0, 0] = y[1, 2] = y[2, 1] = 1.0
    hand = sum(float(((a[i] - y[i]) ** 2).sum()) for i in range(3)) / (2 * 3)
    assert float(make_loss("quadratic")(a, CLASSES)) == pytest.approx(hand, rel=1e-12)
    assert float(make_loss("quadratic")(a, y)) == pytest.approx(hand, rel=1e-12)  # given one-hot


def test_quadratic_gradient_is_a_minus_y_over_n():
    a = torch.tensor([[0.2, 0.9], [0.6, 0.3]], dtype=torch.float64, requires_grad=True)
    make_loss("quadratic")(a, torch.tensor([1, 0])).backward()
    y = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(a.grad, (a.detach() - y) / 2)  # Nielsen: dC/da = (a - y) / n


@pytest.mark.parametrize("shape", [(4, 1), (4,)])
def test_quadratic_width_one_uses_the_label(shape):
    a = torch.tensor([0.9, 0.2, 0.4, 0.7]).reshape(shape)
    y = torch.tensor([1, 0, 1, 0])
    hand = 0.5 * (0.01 + 0.04 + 0.36 + 0.49) / 4
    assert float(make_loss("quadratic")(a, y)) == pytest.approx(hand, rel=1e-6)


@pytest.mark.parametrize("shape", [(4, 1), (4,)])
def test_bce_hand_and_torch(shape):
    z = torch.tensor([1.5, -0.5, 0.0, 3.0], dtype=torch.float64).reshape(shape)
    y = torch.tensor([1, 0, 1, 0])
    s = torch.sigmoid(z.reshape(-1))
    hand = -(y * torch.log(s) + (1 - y) * torch.log(1 - s)).mean()
    loss = make_loss("bce")(z, y)
    assert float(loss) == pytest.approx(float(hand), rel=1e-12)
    reference = nn.BCEWithLogitsLoss()(z.reshape(-1), y.double())
    torch.testing.assert_close(loss, reference)


def test_bce_huge_logits_stay_finite():
    z = torch.tensor([[1e4], [-1e4], [1e30]], requires_grad=True)
    loss = make_loss("bce")(z, torch.tensor([0.0, 1.0, 1.0]))
    assert loss.item() == pytest.approx(2e4 / 3)
    loss.backward()
    assert bool(torch.isfinite(z.grad).all())


def test_mse_hand():
    out = torch.tensor([[0.5], [1.0], [0.2]])
    y = torch.tensor([0.4, 1.3, 0.2])
    assert float(make_loss("mse")(out, y)) == pytest.approx((0.01 + 0.09) / 3, rel=1e-5)
    out2 = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    y2 = torch.tensor([[1.0, 0.0], [3.0, 5.0]])
    assert float(make_loss("mse")(out2, y2)) == pytest.approx((4 + 1) / 4)


def test_predictions_per_loss():
    assert predictions(LOGITS, "cross_entropy").tolist() == [0, 2, 1]
    assert predictions(LOGITS, "quadratic").tolist() == [0, 2, 1]
    logits = torch.tensor([[0.3], [-0.1], [0.0]])
    assert predictions(logits, "bce").tolist() == [1, 0, 0]  # threshold logit 0
    act = torch.tensor([[0.6], [0.4], [0.5]])
    assert predictions(act, "quadratic").tolist() == [1, 0, 0]  # threshold 0.5
    assert predictions(act, "mse").tolist() == pytest.approx([0.6, 0.4, 0.5])


def test_accuracy():
    assert accuracy(LOGITS, torch.tensor([0, 2, 0]), "cross_entropy") == pytest.approx(2 / 3)
    assert accuracy(torch.tensor([[2.0], [-1.0]]), torch.tensor([1.0, 1.0]), "bce") == 0.5
    out = torch.tensor([[0.50], [0.70], [1.00]])
    y = torch.tensor([0.53, 0.75, 1.00])  # errors 0.03 < 0.04, 0.05 > 0.04, 0
    assert accuracy(out, y, "mse") == pytest.approx(2 / 3)
    assert accuracy(out, y, "mse", tolerance=0.1) == 1.0


def test_every_loss_builds_and_has_repr():
    for name in LOSSES:
        assert name in repr(make_loss(name))


def test_errors_are_clear():
    with pytest.raises(ValueError, match="loss='nll' is not one of: cross_entropy, quadratic"):
        make_loss("nll")
    with pytest.raises(ValueError, match="integer class indices"):
        make_loss("cross_entropy")(LOGITS, CLASSES.double())
    with pytest.raises(ValueError, match="C >= 2.*use loss='bce'"):
        make_loss("cross_entropy")(torch.zeros(3, 1), CLASSES)
    with pytest.raises(ValueError, match=r"targets of shape \(2,\) do not match outputs"):
        make_loss("mse")(torch.zeros(3, 1), torch.zeros(2))
    with pytest.raises(ValueError, match="needs at least two outputs"):
        predictions(torch.zeros(3, 1), "cross_entropy")
