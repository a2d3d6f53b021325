"""Dice + cross-entropy, as MONAI's ``DiceCELoss(include_background=False, to_onehot_y=True,
softmax=True)`` that DiffBoost trains with (seed 002), without depending on MONAI.

Dice part (Milletari et al., "V-Net", 3DV 2016, soft Dice): per image and per foreground class,
``1 - (2 sum(p g) + 1e-5) / (sum p + sum g + 1e-5)`` on softmax probabilities ``p`` and the one-hot
truth ``g``, averaged over images and classes (MONAI's ``batch=False``, ``smooth_nr=smooth_dr=1e-5``).
Background is left out of the Dice term only: the CE term, as in MONAI, covers every class.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange, reduce

SMOOTH = 1e-5


def soft_dice_loss(
    logits: torch.Tensor, target: torch.Tensor, *, include_background: bool = False
) -> torch.Tensor:
    """Mean soft Dice loss over images and (foreground) classes.

    Args:
        logits: ``(B, K, H, W)``.
        target: ``(B, H, W)`` int64 class ids in ``[0, K)``.
    """
    num_classes = logits.shape[1]
    probs = logits.softmax(dim=1)
    onehot = rearrange(F.one_hot(target, num_classes), "b h w k -> b k h w").to(probs.dtype)
    if not include_background:
        if num_classes == 1:
            raise ValueError("a single output channel has no foreground to score")
        probs, onehot = probs[:, 1:], onehot[:, 1:]
    intersection = reduce(probs * onehot, "b k h w -> b k", "sum")
    denominator = reduce(probs, "b k h w -> b k", "sum") + reduce(onehot, "b k h w -> b k", "sum")
    dice = (2 * intersection + SMOOTH) / (denominator + SMOOTH)
    return (1 - dice).mean()


class DiceCELoss(torch.nn.Module):
    """``lambda_dice * soft Dice (foreground) + lambda_ce * cross-entropy (all classes)``."""

    def __init__(
        self,
        *,
        include_background: bool = False,
        lambda_dice: float = 1.0,
        lambda_ce: float = 1.0,
    ) -> None:
        super().__init__()
        self.include_background = include_background
        self.lambda_dice = lambda_dice
        self.lambda_ce = lambda_ce

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``logits`` (B, K, H, W); ``target`` (B, H, W) or (B, 1, H, W) class ids."""
        if target.ndim == 4:
            target = rearrange(target, "b 1 h w -> b h w")
        target = target.long()
        dice = soft_dice_loss(logits, target, include_background=self.include_background)
        return self.lambda_dice * dice + self.lambda_ce * F.cross_entropy(logits, target)
