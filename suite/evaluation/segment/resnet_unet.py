"""A U-Net whose encoder is a torchvision ResNet, so an SSL backbone export can initialise it.

Skip features are taken after the stem (``relu(bn1(conv1(x)))``) and after ``layer1`` ... ``layer3``;
``layer4`` is the bottleneck (the ResNet-UNet layout of DiffBoost's ``ResNet50UNet`` and of
segmentation_models_pytorch). Each decoder stage upsamples to its skip's exact size, so both stems
work: "imagenet" (strides 2, 4, 8, 16, 32) and "cifar" (SimCLR's small-image stem, strides 1, 1,
2, 4, 8). A last stage at the input's size, without a skip, precedes the 1x1 classifier.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from suite.errors import DataError
from suite.evaluation.segment.unet import UpBlock
from suite.models.backbones import BackboneSpec, build_backbone, load_backbone

STAGES = ("stem", "layer1", "layer2", "layer3", "layer4")


def _width(layer: nn.Sequential) -> int:
    """Output channels of a ResNet layer: its last block's last BN (bn3 in bottlenecks)."""
    block = layer[-1]
    return (block.bn3 if hasattr(block, "bn3") else block.bn2).num_features


class ResNetUNet(nn.Module):
    """U-Net decoder over a torchvision ResNet encoder (from :func:`build_backbone`).

    Args:
        encoder: A torchvision ResNet (its ``fc`` unused).
        spec: What the encoder is; ``spec.mean``/``spec.std`` say how to normalise its input.
        num_classes: Output channels (background included), logits.
        decoder_channels: Five widths, deepest first: after layer3, layer2, layer1, stem, input.
    """

    def __init__(
        self,
        encoder: nn.Module,
        spec: BackboneSpec,
        num_classes: int,
        decoder_channels: tuple[int, ...] | list[int] = (128, 64, 32, 16, 16),
    ) -> None:
        super().__init__()
        if spec.family != "resnet":
            raise DataError(
                f"backbone arch {spec.arch!r} is a {spec.family}; the U-Net encoder needs a ResNet",
                "export a ResNet backbone (resnet18, resnet50, ...) or use model.encoder=conv",
            )
        if len(decoder_channels) != 5:
            raise ValueError("decoder_channels needs 5 widths")
        self.encoder = encoder
        self.spec = spec
        skip_widths = [encoder.bn1.num_features] + [
            _width(getattr(encoder, f"layer{i}")) for i in (1, 2, 3)
        ]
        deep = _width(encoder.layer4)
        stages = []
        for skip, out in zip(reversed(skip_widths), decoder_channels[:4], strict=True):
            stages.append(UpBlock(deep, skip, out))
            deep = out
        stages.append(UpBlock(deep, 0, decoder_channels[4]))  # back at the input size, no skip
        self.decoder = nn.ModuleList(stages)
        self.head = nn.Conv2d(decoder_channels[4], num_classes, 1)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The encoder's stem, layer1, layer2, layer3 and layer4 outputs."""
        e = self.encoder
        stem = e.relu(e.bn1(e.conv1(x)))
        f1 = e.layer1(e.maxpool(stem))
        f2 = e.layer2(f1)
        f3 = e.layer3(f2)
        return [stem, f1, f2, f3, e.layer4(f3)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        *skips, y = self.features(x)
        for stage in self.decoder[:4]:
            y = stage(y, skips.pop())
        y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
        return self.head(self.decoder[4](y, None))

    def encoder_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder.parameters())


def resnet_unet(
    *,
    in_channels: int,
    image_size: int,
    num_classes: int,
    arch: str = "resnet18",
    stem: str = "cifar",
    backbone: str | Path | None = None,
    decoder_channels: tuple[int, ...] | list[int] = (128, 64, 32, 16, 16),
) -> ResNetUNet:
    """A ResNet U-Net, its encoder freshly initialised or loaded from an SSL export folder.

    With ``backbone``, the export's spec decides arch and stem, and its ``in_channels``
    must match the data's: a mismatch is one DataError before any training.
    """
    if backbone is not None:
        encoder, spec = load_backbone(backbone)
        if spec.in_channels != in_channels:
            raise DataError(
                f"backbone {backbone} takes {spec.in_channels}-channel images but the shard set "
                f"has {in_channels} channel(s)",
                f"use a backbone pretrained on {in_channels}-channel images, or ingest the data "
                f"with --channels {spec.in_channels}",
            )
        encoder.train()
    else:
        spec = BackboneSpec(arch=arch, image_size=image_size, in_channels=in_channels, stem=stem)
        if spec.family != "resnet":
            raise DataError(
                f"model.arch={arch!r} is not a ResNet", "use resnet18, resnet34, resnet50, ..."
            )
        encoder = build_backbone(spec)
    return ResNetUNet(encoder, spec, num_classes, decoder_channels)
