"""MONAI's 2D U-Nets as ``model.encoder`` choices: ``monai_unet`` (``monai.networks.nets.UNet``) and
``monai_attention_unet`` (``AttentionUnet``, seed 002's network: DiffBoost trains it with widths
[16, 32, 64, 128, 128, 256] at 384 px).

Both take ``model.channels`` as widths per level with a stride-2 step between levels, MONAI's
defaults otherwise (UNet: no residual units, instance norm, PReLU; AttentionUnet: batch norm, ReLU,
attention gates on the skips). Their strided convs and transposed-conv upsampling need H and W
divisible by ``2 ** (len(channels) - 1)``; :func:`monai_network` refuses other sizes up front.
"""

from __future__ import annotations

from typing import Literal

from monai.networks.nets import AttentionUnet, UNet
from torch import nn

from suite.errors import ConfigError

MonaiKind = Literal["monai_unet", "monai_attention_unet"]


def check_size(kind: str, channels: list[int], height: int, width: int) -> None:
    """One ConfigError, with a fix that fits, if ``height x width`` does not suit the levels."""
    factor = 2 ** (len(channels) - 1)
    if height % factor == 0 and width % factor == 0:
        return
    levels = len(channels)
    while levels > 1 and (height % 2 ** (levels - 1) or width % 2 ** (levels - 1)):
        levels -= 1
    size = -(-max(height, width) // factor) * factor
    fix = f"ingest at --image-size {size}"
    if levels >= 2:
        fix = f"set model.channels={channels[:levels]} ({levels} levels), or {fix}"
    raise ConfigError(
        f"model.encoder={kind} with model.channels={channels} ({len(channels)} levels) needs image "
        f"height and width divisible by {factor}, but the images are {height}x{width}",
        f"{fix}, or use model.encoder=conv (any size)",
    )


def monai_network(
    kind: MonaiKind, in_channels: int, num_classes: int, channels: list[int], size: tuple[int, int]
) -> nn.Module:
    """A MONAI 2D U-Net producing logits ``(B, num_classes, H, W)``."""
    check_size(kind, channels, *size)
    cls = UNet if kind == "monai_unet" else AttentionUnet
    return cls(
        spatial_dims=2,
        in_channels=in_channels,
        out_channels=num_classes,
        channels=list(channels),
        strides=[2] * (len(channels) - 1),
    )
