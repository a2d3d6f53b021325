"""The Dice+CE loss (MONAI's DiceCELoss): the suite's former hand-written formula reproduced on the
same logits (values and gradients), and cases worked by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from suite.evaluation.segment.losses import SMOOTH, dice_ce_loss


def _old_soft_dice(
    logits: torch.Tensor, target: torch.Tensor, include_background: bool
) -> torch.Tensor:
    """The pre-MONAI suite's soft Dice loss (losses.py at commit 7608949)."""
    probs = logits.softmax(dim=1)
    onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)
    if not include_background:
        probs, onehot = probs[:, 1:], onehot[:, 1:]
    intersection = (probs * onehot).sum(dim=(2, 3))
    denominator = probs.sum(dim=(2, 3)) + onehot.sum(dim=(2, 3))
    return (1 - (2 * intersection + SMOOTH) / (denominator + SMOOTH)).mean()


def _old_dice_ce(logits: torch.Tensor, target: torch.Tensor, *, include_background: bool = False,
                 lambda_dice: float = 1.0, lambda_ce: float = 1.0) -> torch.Tensor:  # fmt: skip
    dice = _old_soft_dice(logits, target, include_background)
    return lambda_dice * dice + lambda_ce * F.cross_entropy(logits, target)


@pytest.mark.parametrize(
    ("classes", "include_background", "lambda_dice", "lambda_ce"),
    [(2, False, 1.0, 1.0), (3, False, 0.5, 2.0), (3, True, 1.0, 1.0), (4, False, 1.0, 0.0)],
)
def test_monai_dice_ce_reproduces_the_hand_written_loss(
    classes: int, include_background: bool, lambda_dice: float, lambda_ce: float
) -> None:
    torch.manual_seed(classes)
    logits = (3 * torch.randn(4, classes, 9, 7)).requires_grad_()
    target = torch.randint(0, classes, (4, 9, 7))
    target[0] = 0  # an image with no foreground: only the smooth terms keep its Dice defined
    kw = {
        "include_background": include_background,
        "lambda_dice": lambda_dice,
        "lambda_ce": lambda_ce,
    }
    old = _old_dice_ce(logits, target, **kw)
    (old_grad,) = torch.autograd.grad(old, logits)
    new = dice_ce_loss(**kw)(logits, target[:, None])
    (new_grad,) = torch.autograd.grad(new, logits)
    torch.testing.assert_close(new, old, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(new_grad, old_grad, rtol=1e-5, atol=1e-8)


def test_soft_dice_of_a_half_overlap_by_hand() -> None:
    # 2 classes on 1x4 pixels; truth foreground at pixels 0,1; prediction certain of foreground at
    # pixels 1,2 (logits +-20 make the softmax 0/1 to 1e-17). Foreground Dice = 2*1 / (2 + 2).
    target = torch.tensor([[[[1, 1, 0, 0]]]])
    fg = torch.tensor([[[-20.0, 20.0, 20.0, -20.0]]])
    logits = torch.stack([-fg, fg], dim=1)  # (1, 2, 1, 4)
    expected = 1 - (2 * 1 + SMOOTH) / (4 + SMOOTH)
    dice_only = dice_ce_loss(lambda_ce=0.0)
    assert dice_only(logits, target).item() == pytest.approx(expected, abs=1e-6)
    # with background: its Dice is also 1/2 here, so the mean does not move
    with_bg = dice_ce_loss(include_background=True, lambda_ce=0.0)
    assert with_bg(logits, target).item() == pytest.approx(expected, abs=1e-6)


def test_background_is_left_out_of_the_dice_term() -> None:
    # a prediction that gets background right everywhere and misses the one foreground pixel
    target = torch.zeros(1, 1, 4, 4, dtype=torch.long)
    target[0, 0, 0, 0] = 1
    logits = torch.stack([torch.full((4, 4), 20.0), torch.full((4, 4), -20.0)])[None]
    without = dice_ce_loss(lambda_ce=0.0)(logits, target).item()  # foreground only: Dice ~0
    with_bg = dice_ce_loss(include_background=True, lambda_ce=0.0)(logits, target).item()
    assert without == pytest.approx(1.0, abs=1e-4)
    assert with_bg == pytest.approx((1.0 + (1 - 30 / 31)) / 2, abs=1e-4)


def test_a_confident_correct_prediction_costs_almost_nothing() -> None:
    target = torch.randint(0, 3, (2, 1, 6, 6))
    logits = 30.0 * F.one_hot(target[:, 0], 3).permute(0, 3, 1, 2).float()
    assert dice_ce_loss()(logits, target).item() == pytest.approx(0.0, abs=1e-6)
    assert math.isfinite(dice_ce_loss()(-logits, target).item())
