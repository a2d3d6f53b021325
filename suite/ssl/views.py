"""Augmented views of a shard image, drawn from a seed of their own.

lightly's transforms draw from torch's, numpy's and Python's global RNGs (its blur and
solarisation use ``np.random``). :class:`SeededViews` seeds all three from (seed, epoch, source,
row) around each call and restores them after, so the views of an image are a pure function of
those numbers: a resumed run, or one read with another number of DataLoader workers, sees the same
views as an uninterrupted one.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from suite.data.transforms import sample_seed

Sample = dict[str, Any]


def to_pil(image: torch.Tensor, channels: int) -> Image.Image:
    """uint8 ``(C, H, W)`` -> a PIL image with the backbone's channel count (L or RGB)."""
    array = image.numpy()
    pil = (
        Image.fromarray(array[0])
        if array.shape[0] == 1
        else Image.fromarray(array.transpose(1, 2, 0))
    )
    want = "L" if channels == 1 else "RGB"
    return pil if pil.mode == want else pil.convert(want)


@dataclass
class SeededViews:
    """Sample dict -> ``{"views": [tensor, ...], "index": ...}`` through a lightly multi-view
    transform, seeded per sample.

    Args:
        transform: A lightly ``MultiViewTransform`` (PIL image -> list of tensors).
        channels: The backbone's input channels (grey images are repeated for RGB backbones).
        seed: The run's seed.
    """

    transform: Callable[[Image.Image], list[torch.Tensor]]
    channels: int
    seed: int
    epoch: int = 0

    def __call__(self, sample: Sample) -> Sample:
        image = to_pil(sample["image"], self.channels)
        seed = sample_seed(self.seed, self.epoch, sample["source"], sample["row_index"])
        py_state, np_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)
            random.seed(seed)
            views = self.transform(image)
        random.setstate(py_state)
        np.random.set_state(np_state)
        return {"views": views, "index": sample["index"], "source": sample["source"]}
