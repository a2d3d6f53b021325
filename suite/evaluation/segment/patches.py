"""Patch training and sliding-window inference for images larger than the network should see.

Seed 002 (DiffBoost) trains on patches and predicts with MONAI's ``SlidingWindowInferer`` (384 px
windows, overlap 0.5). With ``train.patch_size`` set, each training row is cropped to one random
``patch_size`` square per epoch, image and mask alike; the corner is drawn from (run seed, epoch,
row index), as the augmentations are, so a run repeats whatever the batch order. Prediction and
validation then go through ``monai.inferers.sliding_window_inference`` with ``roi_size`` the patch
and ``train.window_overlap``, "constant" blending (the mean of the overlapping windows' logits).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from torch import nn

from suite.data.transforms import sample_seed

# keeps the crop's draw apart from the augmentations' (seeded from the same three numbers)
CROP_STREAM = 7


@dataclass(frozen=True, slots=True)
class Window:
    """Sliding-window inference settings: the square window side and the overlap."""

    size: int
    overlap: float = 0.5


def crop_corner(
    seed: int, epoch: int, index: int, shape: tuple[int, int], size: int
) -> tuple[int, int]:
    """(top, left) of row ``index``'s ``size`` crop of an ``(H, W)`` image in this epoch."""
    rng = np.random.default_rng([sample_seed(seed, epoch, index), CROP_STREAM])
    return int(rng.integers(0, shape[0] - size + 1)), int(rng.integers(0, shape[1] - size + 1))


def crop(sample: dict, corner: tuple[int, int], size: int) -> dict:
    """The sample with its image and mask cut to the ``size`` square at ``corner``."""
    top, left = corner
    window = (slice(None), slice(top, top + size), slice(left, left + size))
    return {**sample, "image": sample["image"][window], "mask": sample["mask"][window]}


def infer(net: nn.Module, images: torch.Tensor, window: Window | None) -> torch.Tensor:
    """Logits of ``(B, C, H, W)`` images: one pass, or windows blended by MONAI."""
    if window is None:
        return net(images)
    size = (window.size, window.size)
    logits = sliding_window_inference(
        images, size, sw_batch_size=len(images), predictor=net, overlap=window.overlap
    )
    return torch.as_tensor(logits).as_subclass(torch.Tensor)
