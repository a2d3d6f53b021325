"""EfficientNet-Lite0: the shipped ImageNet file loads strictly and classifies real photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_sample_image
from torchvision.models import ResNet18_Weights

from suite.errors import DataError
from suite.models import efficientnet_lite as E
from suite.models.backbones import BackboneSpec, build_backbone, load_backbone, save_backbone


def _photo(name: str) -> torch.Tensor:
    """One of scikit-learn's two bundled photos, centre-cropped to 224 px, on [0, 1]."""
    img = torch.from_numpy(np.array(load_sample_image(name))).permute(2, 0, 1).float() / 255
    h, w = img.shape[1:]
    s = min(h, w)
    img = img[:, (h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
    x = F.interpolate(img[None], size=(224, 224), mode="bilinear", antialias=True)
    mean = torch.tensor(E.IMAGENET_LITE_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(E.IMAGENET_LITE_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def test_imagenet_file_loads_strictly_and_names_real_photos() -> None:
    net = E.EfficientNetLite0(num_classes=1000)
    state = E.load_imagenet_state()
    result = net.load_state_dict(state, strict=True)  # raises on any missing or unexpected key
    assert not result.missing_keys and not result.unexpected_keys
    net.eval()
    categories = ResNet18_Weights.IMAGENET1K_V1.meta["categories"]  # offline class names
    with torch.no_grad():
        logits = net(torch.cat([_photo("china.jpg"), _photo("flower.jpg")]))
    top3 = [[categories[i] for i in row] for row in logits.topk(3, dim=1).indices.tolist()]
    # a Chinese temple and a daisy-like flower: the top-3 must contain the right kind of thing
    assert {"palace", "bell cote", "monastery", "temple"} & set(top3[0]), top3[0]
    assert top3[1][0] == "daisy", top3[1]


def test_backbone_family_round_trip(tmp_path: Path) -> None:
    spec = BackboneSpec(arch="efficientnet_lite0", image_size=32, in_channels=3)
    assert spec.family == "efficientnet_lite0" and spec.dim == 1280
    net = build_backbone(spec)
    E.load_backbone_state(net, E.load_imagenet_state())  # the classifier is dropped, rest strict
    net.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = net(x)
    assert expected.shape == (2, 1280)
    loaded, loaded_spec = load_backbone(save_backbone(net, spec, tmp_path / "export"))
    assert loaded_spec == spec
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), expected)


def test_same_padding_matches_tensorflow_output_sizes() -> None:
    net = E.EfficientNetLite0().eval()
    for size in (28, 31, 224):
        with torch.no_grad():
            stem = net._conv_stem(torch.zeros(1, 3, size, size))
        assert stem.shape[-1] == -(-size // 2)  # ceil(size / 2), TensorFlow SAME


def test_a_bad_weights_file_is_one_error(tmp_path: Path) -> None:
    bad = tmp_path / "w.pth"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable weights-only state_dict"):
        E.load_imagenet_state(bad)
