"""Sample-dict transforms for training on shard sets.

Random augmentation draws from a generator seeded by (seed, epoch, sample index), not from the
worker's RNG: a run resumed mid-epoch, or read with another number of workers, sees exactly the
same augmented images as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import torch
import torchvision.transforms.v2.functional as TF

Sample = dict[str, Any]


def sample_seed(*parts: int) -> int:
    """A 63-bit seed from integers, stable across processes and Python versions."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def to_float(sample: Sample) -> Sample:
    """uint8 (C, H, W) -> float32 in [0, 1]."""
    return {**sample, "image": sample["image"].float().div_(255.0)}


@dataclass
class SeededAugment:
    """Horizontal flip, a small affine (rotation, translation, scale) and brightness/contrast
    jitter, each off by default.

    Medical images are not mirror-symmetric (a flipped chest X-ray puts the heart on the right), so
    nothing here is on unless a config turns it on. Each option draws only when it is on, and the
    later ones draw after the earlier ones: turning on ``scale`` leaves the flips and angles that a
    run without it drew unchanged.
    """

    seed: int
    hflip: bool = False
    degrees: float = 0.0
    translate: float = 0.0  # fraction of the image size
    scale: float = 0.0  # zoom drawn in [1 - scale, 1 + scale]
    brightness: float = 0.0  # intensity factor drawn in [1 - b, 1 + b]
    contrast: float = 0.0  # factor drawn in [1 - c, 1 + c] about the image's mean
    epoch: int = 0

    @property
    def active(self) -> bool:
        return (
            self.hflip
            or self.degrees > 0
            or self.translate > 0
            or self.scale > 0
            or self.brightness > 0
            or self.contrast > 0
        )

    def __call__(self, sample: Sample) -> Sample:
        if not self.active:
            return sample
        g = torch.Generator().manual_seed(sample_seed(self.seed, self.epoch, sample["index"]))
        image = sample["image"]
        if self.hflip and torch.rand((), generator=g) < 0.5:
            image = image.flip(-1)
        if self.degrees > 0 or self.translate > 0 or self.scale > 0:
            angle = float((torch.rand((), generator=g) * 2 - 1) * self.degrees)
            h, w = image.shape[-2:]
            dx = round(float((torch.rand((), generator=g) * 2 - 1) * self.translate * w))
            dy = round(float((torch.rand((), generator=g) * 2 - 1) * self.translate * h))
            zoom = 1.0
            if self.scale > 0:
                zoom = 1.0 + float((torch.rand((), generator=g) * 2 - 1) * self.scale)
            image = TF.affine(image, angle=angle, translate=[dx, dy], scale=zoom, shear=[0.0, 0.0])
        if self.brightness > 0:
            factor = 1.0 + float((torch.rand((), generator=g) * 2 - 1) * self.brightness)
            image = TF.adjust_brightness(image, factor)
        if self.contrast > 0:
            factor = 1.0 + float((torch.rand((), generator=g) * 2 - 1) * self.contrast)
            image = TF.adjust_contrast(image, factor)
        return {**sample, "image": image}


@dataclass
class Compose:
    """Apply sample transforms in order (picklable, unlike a lambda, for spawned workers)."""

    transforms: list[Any]

    def __call__(self, sample: Sample) -> Sample:
        for t in self.transforms:
            sample = t(sample)
        return sample
