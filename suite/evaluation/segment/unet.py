"""The suite's 2D U-Net (Ronneberger et al., "U-Net", MICCAI 2015) with a plain conv encoder.

Each level is two 3x3 conv-BN-ReLU layers; the encoder halves the resolution between levels with a
max-pool, the decoder upsamples to the skip's exact size (so odd sizes work without cropping),
concatenates the skip and applies two more convs. Output: logits ``(B, K, H, W)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def double_conv(in_ch: int, out_ch: int) -> nn.Sequential:
    """Two 3x3 conv-BN-ReLU layers (bias off: BN has its own shift)."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class UpBlock(nn.Module):
    """Upsample to the skip's size, concatenate it, two convs."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = double_conv(in_ch + skip_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        if skip is None:
            return self.conv(x)
        # bilinear to the skip's size, not a fixed x2: ResNet stems and odd sizes change the ratio
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([x, skip], dim=1))


class UNet(nn.Module):
    """A U-Net with ``len(channels)`` levels.

    Args:
        in_channels: Image channels.
        num_classes: Output channels (background included), logits.
        channels: Widths per level, shallowest first; ``len(channels) - 1`` down-samplings.
    """

    def __init__(
        self, in_channels: int, num_classes: int, channels: tuple[int, ...] | list[int]
    ) -> None:
        super().__init__()
        channels = list(channels)
        self.down = nn.ModuleList()
        prev = in_channels
        for width in channels:
            self.down.append(double_conv(prev, width))
            prev = width
        self.up = nn.ModuleList(
            UpBlock(deep, skip, skip)
            for deep, skip in zip(channels[::-1][:-1], channels[::-1][1:], strict=True)
        )
        self.head = nn.Conv2d(channels[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2, ceil_mode=True))
            skips.append(x)
        x = skips.pop()
        for block in self.up:
            x = block(x, skips.pop())
        return self.head(x)

    def encoder_parameters(self) -> list[nn.Parameter]:
        return [p for block in self.down for p in block.parameters()]
