"""torchvision ResNets as feature backbones: ``(B, C, H, W)`` -> ``(B, D)`` pooled ``layer4``."""

from __future__ import annotations

import torchvision
from torch import nn

ARCHS = (
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "resnext101_64x4d",
    "wide_resnet50_2",
    "wide_resnet101_2",
)


def feature_dim(arch: str) -> int:
    return 512 if arch in ("resnet18", "resnet34") else 2048


def build_resnet(arch: str, *, in_channels: int = 3, stem: str = "imagenet") -> nn.Module:
    """A torchvision ResNet without its classifier (``fc`` is an Identity), keeping torchvision's
    key names so ImageNet files load into it.

    ``stem="cifar"`` is the small-image stem of SimCLR (Chen et al., 2020, appendix B.9): a 3x3
    stride-1 ``conv1`` and no max-pool, so 32-64 px images are not reduced to 1-2 px by ``layer4``.
    """
    net = getattr(torchvision.models, arch)(weights=None)
    if stem == "cifar":
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    if in_channels != 3:
        old = net.conv1
        net.conv1 = nn.Conv2d(
            in_channels, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False
        )
    net.fc = nn.Identity()
    return net
