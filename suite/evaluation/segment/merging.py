"""DiffBoost's random merging masks (Zhang et al., IEEE TMI 2024, arXiv 2310.12868; seed 002).

The rule, as in the seed's ``Segmentor.aug_training_step``: for each real image and a synthetic
partner, draw a Bernoulli grid of ``ceil(H / patch) x ceil(W / patch)`` cells with
``P(cell = 1) = alpha``, blow each cell up to a ``patch x patch`` square (nearest neighbour), and
merge ``m * real + (1 - m) * synthetic`` for the network's outputs and for the labels alike, so the
label of every pixel comes from the same image as its prediction. ``alpha`` is therefore the share of
patches that stay *real* (the seed computes ``random_select = rand < alpha`` and multiplies the
real prediction by it). The seed floors the grid and resizes it to (H, W); here the grid is rounded
up and cropped, so patches are exactly ``patch`` pixels even when ``patch`` does not divide H.
"""

from __future__ import annotations

import math

import torch
from einops import repeat


def random_merging_mask(
    batch: int,
    height: int,
    width: int,
    *,
    alpha: float,
    patch: int,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """A ``(B, 1, H, W)`` float mask of ``patch``-pixel squares, each 1 with probability ``alpha``."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha={alpha} is not a probability")
    if patch < 1:
        raise ValueError(f"patch={patch} must be at least 1 pixel")
    gh, gw = math.ceil(height / patch), math.ceil(width / patch)
    cells = torch.rand((batch, gh, gw), generator=generator) < alpha
    mask = repeat(cells, "b gh gw -> b 1 (gh ph) (gw pw)", ph=patch, pw=patch)
    return mask[..., :height, :width].to(device=device, dtype=torch.float32)


def merge(mask: torch.Tensor, real: torch.Tensor, synthetic: torch.Tensor) -> torch.Tensor:
    """``mask * real + (1 - mask) * synthetic``, broadcasting the 1-channel mask over channels."""
    return mask * real + (1 - mask) * synthetic


def merge_labels(mask: torch.Tensor, real: torch.Tensor, synthetic: torch.Tensor) -> torch.Tensor:
    """The label map that goes with :func:`merge` on predictions: ids, not blended values."""
    return torch.where(mask.bool(), real, synthetic)
