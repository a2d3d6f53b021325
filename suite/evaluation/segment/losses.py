"""The training loss: MONAI's ``DiceCELoss(include_background=False, to_onehot_y=True, softmax=True)``,
the loss DiffBoost (seed 002) trains with.

Dice part (Milletari et al., "V-Net", 3DV 2016, soft Dice): per image and per foreground class,
``1 - (2 sum(p g) + 1e-5) / (sum p + sum g + 1e-5)`` on softmax probabilities ``p`` and the one-hot
truth ``g``, averaged over images and classes (``batch=False``). Background is left out of the Dice
term only: the cross-entropy term covers every class. This is the formula the suite hand-wrote
before it used MONAI; tests/unit/evaluation/test_segment_losses.py checks MONAI against it.
"""

from __future__ import annotations

from monai.losses import DiceCELoss

# pinned rather than left to MONAI's defaults (the same 1e-5 in 1.4-1.6), so a MONAI upgrade
# cannot change the loss
SMOOTH = 1e-5


def dice_ce_loss(
    *, include_background: bool = False, lambda_dice: float = 1.0, lambda_ce: float = 1.0
) -> DiceCELoss:
    """``lambda_dice * soft Dice + lambda_ce * cross-entropy`` on logits ``(B, K, H, W)`` and
    class-id targets ``(B, 1, H, W)``."""
    return DiceCELoss(
        include_background=include_background,
        to_onehot_y=True,
        softmax=True,
        smooth_nr=SMOOTH,
        smooth_dr=SMOOTH,
        batch=False,
        lambda_dice=lambda_dice,
        lambda_ce=lambda_ce,
    )
