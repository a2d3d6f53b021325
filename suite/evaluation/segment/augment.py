"""Seed 002's baseline augmentations through MONAI dictionary transforms, seeded per sample.

DiffBoost compares segmentation with each of these (batchgenerators transforms) against its synthetic
pairs. Here each name in ``train.augment`` adds one MONAI transform, applied with probability
``train.augment_prob``, in this order:

========== ================================================ =====================================
name       MONAI transform                                   seed 002 (batchgenerators)
========== ================================================ =====================================
contrast   ``RandScaleIntensityFixedMeand(factors=0.25)``    RandomContrast 0.75-1.25
gamma      ``RandAdjustContrastd(gamma=(0.7, 1.5))``         RandomGamma 0.7-1.5
brightness ``RandScaleIntensityd(factors=0.25)``             RandomBrightness (sigma 0.5)
noise      ``RandGaussianNoised(std=0.112)``                 RandomNoise, variance 0-0.05
blur       ``RandGaussianSmoothd(sigma 0.5-1.5)``            RandomResolution, blur 0.5-1.5
mirror     ``RandFlipd`` on each spatial axis                RandomMirror
rotate     ``RandRotated(range_x=5 degrees)``                RandomRotate +-5 degrees
scale      ``RandZoomd(0.95-1.05, keep_size=True)``          RandomScale 0.95-1.05
========== ================================================ =====================================

Intensities are on the [0, 255] scale of the stored pixels (the noise std is 0.112 * 255: variance
0.05 on the [-1, 1] scale the networks see), clipped back to [0, 255]. Brightness is multiplicative:
the seed's additive shift is undone by its per-sample min-max normalisation, which the suite does not
apply (it normalises with a fixed mean and std). Geometric transforms move the mask with the image
(nearest-neighbour). Every sample's draw is seeded from (run seed, epoch, row index), as
:class:`suite.data.transforms.SeededAugment` does, so a run is repeatable whatever the batch order.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from monai.transforms import (
    Compose,
    RandAdjustContrastd,
    RandFlipd,
    RandGaussianNoised,
    RandGaussianSmoothd,
    RandRotated,
    RandScaleIntensityd,
    RandScaleIntensityFixedMeand,
    RandZoomd,
)

from suite.data.transforms import sample_seed
from suite.evaluation.segment.config import AugmentName

AUGMENTS: tuple[str, ...] = AugmentName.__args__  # type: ignore[attr-defined]
IMAGE, MASK = "image", "mask"


def _transforms(name: str, prob: float) -> list[Any]:
    both = (IMAGE, MASK)
    if name == "contrast":
        return [RandScaleIntensityFixedMeand(IMAGE, factors=0.25, prob=prob)]
    if name == "gamma":
        return [RandAdjustContrastd(IMAGE, gamma=(0.7, 1.5), prob=prob)]
    if name == "brightness":
        return [RandScaleIntensityd(IMAGE, factors=0.25, prob=prob)]
    if name == "noise":
        return [RandGaussianNoised(IMAGE, std=math.sqrt(0.05) / 2 * 255, prob=prob)]
    if name == "blur":
        sigma = (0.5, 1.5)
        return [RandGaussianSmoothd(IMAGE, sigma_x=sigma, sigma_y=sigma, prob=prob)]
    if name == "mirror":
        return [RandFlipd(both, prob=prob, spatial_axis=axis) for axis in (0, 1)]
    if name == "rotate":
        return [RandRotated(both, range_x=math.radians(5), prob=prob,
                            mode=("bilinear", "nearest"), padding_mode="zeros")]  # fmt: skip
    if name == "scale":
        return [RandZoomd(both, min_zoom=0.95, max_zoom=1.05, prob=prob,
                          mode=("bilinear", "nearest"), keep_size=True)]  # fmt: skip
    raise ValueError(f"unknown augmentation {name!r}; known: {', '.join(AUGMENTS)}")


class BaselineAugment:
    """``augment(sample, epoch)``: the named augmentations on one shard sample.

    The image comes back float on the [0, 255] scale (what :func:`.data.to_batch` divides by 255),
    the mask with its dtype and shape.
    """

    def __init__(self, names: list[str], prob: float, seed: int) -> None:
        self.names = list(names)
        self.seed = seed
        self.compose = Compose([t for name in names for t in _transforms(name, prob)])

    @property
    def active(self) -> bool:
        return bool(self.names)

    def __call__(self, sample: dict, epoch: int) -> dict:
        if not self.active:
            return sample
        seed = sample_seed(self.seed, epoch, int(sample["index"])) % 2**32
        self.compose.set_random_state(seed=seed)
        mask = sample[MASK]
        out = self.compose({IMAGE: sample[IMAGE].float(), MASK: mask.float()})
        image = torch.as_tensor(out[IMAGE]).clamp_(0, 255)
        new_mask = torch.as_tensor(out[MASK]).round_().to(mask.dtype)
        return {**sample, IMAGE: image.as_subclass(torch.Tensor),
                MASK: new_mask.as_subclass(torch.Tensor)}  # fmt: skip
