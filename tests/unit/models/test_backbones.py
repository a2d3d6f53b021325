"""The backbone families and the export folder contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from suite.errors import DataError
from suite.models.backbones import (
    BackboneSpec,
    build_backbone,
    load_backbone,
    read_backbone_spec,
    save_backbone,
)


@pytest.mark.parametrize(
    ("spec", "dim"),
    [
        (BackboneSpec(arch="resnet18", image_size=32, in_channels=1, stem="cifar"), 512),
        (BackboneSpec(arch="resnet50", image_size=32), 2048),
        (BackboneSpec(arch="vit_tiny", image_size=32, patch_size=8, num_layers=2), 192),
        (
            BackboneSpec(
                arch="vit",
                image_size=16,
                patch_size=4,
                num_layers=1,
                num_heads=2,
                hidden_dim=32,
                mlp_dim=64,
                in_channels=1,
            ),
            32,
        ),
    ],
)
def test_round_trip_gives_the_same_features(tmp_path: Path, spec: BackboneSpec, dim: int) -> None:
    torch.manual_seed(0)
    net = build_backbone(spec).eval()
    x = torch.randn(2, spec.in_channels, spec.image_size, spec.image_size)
    with torch.no_grad():
        expected = net(x)
    assert expected.shape == (2, dim) == (2, spec.dim)
    folder = save_backbone(net, spec, tmp_path / "export", {"method": "test"})
    _, meta, _ = read_backbone_spec(folder)
    assert meta.provenance == {"method": "test"} and len(meta.files["backbone.safetensors"]) == 64
    loaded, loaded_spec = load_backbone(folder)
    assert loaded_spec == spec
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), expected)


def test_vit_takes_local_crops_through_interpolated_position_embeddings() -> None:
    spec = BackboneSpec(arch="vit_tiny", image_size=32, patch_size=8, num_layers=1)
    net = build_backbone(spec).eval()
    with torch.no_grad():
        local = net(torch.randn(3, 3, 16, 16))  # a 2x2 patch grid instead of 4x4
        assert local.shape == (3, 192) and torch.isfinite(local).all()
        # at the native size the stored embedding is used as is
        pos = net.position_embedding(4, 4)
        assert pos.data_ptr() == net.vit.encoder.pos_embedding.data_ptr()
        # interpolating to the native grid from itself is the identity (up to bicubic rounding)
        assert net.position_embedding(2, 2).shape == (1, 5, 192)
    with pytest.raises(ValueError, match="patches"):
        net(torch.randn(1, 3, 20, 20))


def test_changed_weights_are_refused(tmp_path: Path) -> None:
    spec = BackboneSpec(arch="resnet18", image_size=16, stem="cifar")
    folder = save_backbone(build_backbone(spec), spec, tmp_path / "export")
    with open(folder / "backbone.safetensors", "r+b") as f:
        f.seek(-8, 2)
        f.write(b"\x00" * 8)
    with pytest.raises(DataError, match="does not match the digest"):
        load_backbone(folder)


def test_bad_specs_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not supported"):
        BackboneSpec(arch="vgg16", image_size=32)
    with pytest.raises(DataError, match="multiple of patch_size"):
        BackboneSpec(arch="vit_small", image_size=30)
    with pytest.raises(DataError, match="needs num_layers"):
        BackboneSpec(arch="vit", image_size=32)
    with pytest.raises(DataError, match="mean/std"):
        BackboneSpec(
            arch="resnet18", image_size=32, in_channels=1, mean=(0.1, 0.2, 0.3), std=(1, 1, 1)
        )
    (tmp_path / "synmed-export.json").write_text(json.dumps({"kind": "backbone", "family": "x"}))
    (tmp_path / "backbone.safetensors").write_bytes(b"")
    with pytest.raises(DataError, match="malformed"):
        read_backbone_spec(tmp_path)
