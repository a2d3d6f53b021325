"""Dice+CE: the soft Dice term (background excluded) and the CE term, on cases worked by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from suite.evaluation.segment.losses import SMOOTH, DiceCELoss, soft_dice_loss


def test_soft_dice_of_a_half_overlap_by_hand() -> None:
    # 2 classes on 1x4 pixels; truth foreground at pixels 0,1; prediction certain of foreground at
    # pixels 1,2 (logits +-20 make the softmax 0/1 to 1e-17). Foreground Dice = 2*1 / (2 + 2).
    target = torch.tensor([[[1, 1, 0, 0]]])
    fg = torch.tensor([[[-20.0, 20.0, 20.0, -20.0]]])
    logits = torch.stack([-fg, fg], dim=1)  # (1, 2, 1, 4)
    expected = 1 - (2 * 1 + SMOOTH) / (4 + SMOOTH)
    assert soft_dice_loss(logits, target).item() == pytest.approx(expected, abs=1e-6)
    # with background: its Dice is also 1/2 here, so the mean does not move
    assert soft_dice_loss(logits, target, include_background=True).item() == pytest.approx(
        expected, abs=1e-6
    )


def test_background_is_left_out_of_the_dice_term() -> None:
    # a prediction that gets background right everywhere and misses the one foreground pixel
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, 0, 0] = 1
    logits = torch.stack([torch.full((4, 4), 20.0), torch.full((4, 4), -20.0)])[None]
    without = soft_dice_loss(logits, target).item()  # foreground only: Dice ~0
    with_bg = soft_dice_loss(logits, target, include_background=True).item()
    assert without == pytest.approx(1.0, abs=1e-4)
    assert with_bg == pytest.approx((1.0 + (1 - 30 / 31)) / 2, abs=1e-4)


def test_dice_ce_adds_the_cross_entropy_over_all_classes() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5, 5, requires_grad=True)
    target = torch.randint(0, 3, (2, 1, 5, 5))
    loss = DiceCELoss(lambda_dice=0.5, lambda_ce=2.0)(logits, target)
    expected = 0.5 * soft_dice_loss(logits, target[:, 0]) + 2.0 * F.cross_entropy(
        logits, target[:, 0]
    )
    assert loss.item() == pytest.approx(expected.item())
    loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_a_confident_correct_prediction_costs_almost_nothing() -> None:
    target = torch.randint(0, 3, (2, 6, 6))
    logits = 30.0 * F.one_hot(target, 3).permute(0, 3, 1, 2).float()
    assert DiceCELoss()(logits, target).item() == pytest.approx(0.0, abs=1e-6)
    assert math.isfinite(DiceCELoss()(-logits, target).item())
