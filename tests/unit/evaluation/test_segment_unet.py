"""The U-Nets: output shapes for both encoders and stems, and SSL-export initialisation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from suite.errors import DataError
from suite.evaluation.segment.resnet_unet import resnet_unet
from suite.evaluation.segment.unet import UNet
from suite.models.backbones import BackboneSpec, build_backbone, save_backbone


@pytest.mark.parametrize(("size", "channels"), [(32, 1), (27, 3)])
def test_conv_unet_keeps_the_input_size(size: int, channels: int) -> None:
    net = UNet(channels, 3, [8, 16, 32]).eval()
    with torch.no_grad():
        out = net(torch.randn(2, channels, size, size))
    assert out.shape == (2, 3, size, size)


@pytest.mark.parametrize(("arch", "stem"), [("resnet18", "cifar"), ("resnet18", "imagenet"),
                                            ("resnet50", "cifar")])  # fmt: skip
def test_resnet_unet_keeps_the_input_size(arch: str, stem: str) -> None:
    net = resnet_unet(in_channels=1, image_size=32, num_classes=3, arch=arch, stem=stem).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 1, 32, 32))
        features = net.features(torch.randn(1, 1, 32, 32))
    assert out.shape == (2, 3, 32, 32)
    # skips from stem, layer1..layer3 and layer4 at the stem's strides
    strides = (1, 1, 2, 4, 8) if stem == "cifar" else (2, 4, 8, 16, 32)
    assert [32 // f.shape[-1] for f in features] == list(strides)


def _export(tmp_path: Path, in_channels: int) -> tuple[Path, dict[str, torch.Tensor]]:
    spec = BackboneSpec(arch="resnet18", image_size=32, in_channels=in_channels, stem="cifar")
    torch.manual_seed(123)
    net = build_backbone(spec)
    with torch.no_grad():  # move BN statistics off their defaults so they are checked too
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
    folder = save_backbone(net, spec, tmp_path / "ssl", {"method": "test"})
    return folder, {k: v.clone() for k, v in net.state_dict().items() if not k.startswith("fc.")}


def test_ssl_export_initialises_the_encoder(tmp_path: Path) -> None:
    folder, saved = _export(tmp_path, in_channels=1)
    torch.manual_seed(0)  # a different seed: equality below can only come from the file
    net = resnet_unet(in_channels=1, image_size=32, num_classes=3, backbone=folder)
    encoder = net.encoder.state_dict()
    assert set(saved) <= set(encoder)
    for key, value in saved.items():
        torch.testing.assert_close(encoder[key], value, msg=key)
    fresh = resnet_unet(in_channels=1, image_size=32, num_classes=3, arch="resnet18", stem="cifar")
    assert not torch.equal(fresh.encoder.conv1.weight, net.encoder.conv1.weight)
    assert net.encoder.training  # handed back ready to fine-tune, not in eval mode
    assert net.spec.mean == (0.5,) and net.spec.stem == "cifar"


def test_backbone_with_other_input_channels_is_one_clear_error(tmp_path: Path) -> None:
    folder, _ = _export(tmp_path, in_channels=3)
    with pytest.raises(DataError, match="3-channel images but the shard set has 1") as err:
        resnet_unet(in_channels=1, image_size=32, num_classes=3, backbone=folder)
    assert "--channels 3" in str(err.value.fix)


def test_vit_arch_is_refused_as_an_encoder() -> None:
    with pytest.raises(DataError, match="not a ResNet"):
        resnet_unet(in_channels=1, image_size=32, num_classes=2, arch="vit_tiny")
