"""Pixels to network input, and frozen features extracted once per backbone.

:class:`Preprocess` is the one path from shard pixels (uint8 ``(B, C, H, W)``) to what a backbone
was trained on, used both for extraction and inside the fine-tuned classifier, so the probe, kNN,
the shallow heads and fine-tuning all see identical inputs. :func:`extract_features` runs the
frozen backbone once over a set of rows; every feature protocol then reuses the array.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from suite.evaluation.classify.data import ImageLabelDataset, RowsSubset


class Preprocess(nn.Module):
    """uint8 ``(B, C, H, W)`` -> float ``(B, in_channels, size, size)``, normalised.

    Channel adaptation (when asked for): a grey image is repeated to RGB, the convention of
    ImageNet-initialised medical baselines; RGB into a 1-channel network is averaged.
    """

    def __init__(
        self, *, in_channels: int, size: int, mean: tuple[float, ...], std: tuple[float, ...]
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.size = size
        # not persistent: the exported classifier stores them in its json, not as weights
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.mean.device, torch.float32) / 255.0
        if x.shape[1] != self.in_channels:
            x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x.mean(dim=1, keepdim=True)
        if tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return (x - self.mean) / self.std


def loader(
    parts: list[RowsSubset], batch_size: int, *, shuffle: bool = False, seed: int = 0
) -> DataLoader:
    """Batches of (uint8 images, labels); training order from its own seeded generator.

    When shuffling (training), a last batch of one row is dropped: BatchNorm cannot normalise a
    single pooled feature vector.
    """
    dataset = ImageLabelDataset(parts)
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        drop_last=shuffle and len(dataset) % batch_size == 1,
        num_workers=0,  # the CPU is shared; shards are small and decode fast
    )


@torch.inference_mode()
def extract_features(
    net: nn.Module, preprocess: Preprocess, rows: RowsSubset, batch_size: int
) -> np.ndarray:
    """``(len(rows), D)`` float32 features of the frozen network (eval mode: BatchNorm uses its
    running statistics, dropout is off)."""
    net.eval()
    out: list[np.ndarray] = []
    for images, _ in loader([rows], batch_size):
        out.append(net(preprocess(images)).flatten(1).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


class FeatureTable:
    """Features of a shard set's rows, extracted once, looked up by row position."""

    def __init__(self, positions: np.ndarray, features: np.ndarray) -> None:
        self.index = {int(p): i for i, p in enumerate(positions)}
        self.features = features

    def take(self, positions: np.ndarray) -> np.ndarray:
        return self.features[[self.index[int(p)] for p in positions]]
