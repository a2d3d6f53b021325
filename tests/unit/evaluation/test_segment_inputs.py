"""Bad input to `evaluate segment`: one clear error each, before training, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from suite.errors import ConfigError, DataError, SynmedError
from suite.evaluation.segment.config import load_segment_config
from suite.evaluation.segment.run import evaluate_segmentation
from suite.models.backbones import BackboneSpec, build_backbone, save_backbone
from tests.unit.data.helpers import make_shard_set


@pytest.fixture
def sets(tmp_path: Path) -> dict[str, Path]:
    return {
        "masks16": make_shard_set(tmp_path / "masks16", n=9, masks=True, size=16),
        "masks20": make_shard_set(tmp_path / "masks20", n=9, masks=True, size=20),
        "plain": make_shard_set(tmp_path / "plain", n=9, size=16),
    }


def _run(tmp_path: Path, *overrides: str) -> Path:
    out = tmp_path / "out"
    cfg = load_segment_config(None, ["train.epochs=1", "train.seeds=[0]", *overrides])
    evaluate_segmentation(cfg, out)
    return out


def _fails(tmp_path: Path, error: type[SynmedError], match: str, *overrides: str) -> SynmedError:
    with pytest.raises(error, match=match) as info:
        _run(tmp_path, *overrides)
    assert not (tmp_path / "out").exists()  # refused before anything was written
    # every message carries its fix (load_config's unknown key lists the allowed keys instead)
    assert info.value.fix or "allowed keys here" in info.value.what
    return info.value


def test_a_set_without_masks(tmp_path: Path, sets: dict[str, Path]) -> None:
    err = _fails(tmp_path, DataError, "has no masks", f"data.shards={sets['plain']}")
    assert str(sets["plain"]) in err.what


def test_a_synthetic_set_without_masks(tmp_path: Path, sets: dict[str, Path]) -> None:
    _fails(tmp_path, DataError, "synthetic shard set .* has no masks",
           f"data.shards={sets['masks16']}", f"data.synthetic={sets['plain']}",
           "train.training_data=merging")  # fmt: skip


def test_image_and_mask_sizes_differ_between_the_mixed_sets(
    tmp_path: Path, sets: dict[str, Path]
) -> None:
    err = _fails(tmp_path, DataError, "image/mask sizes differ",
                 f"data.shards={sets['masks16']}", f"data.synthetic={sets['masks20']}",
                 "train.training_data=mixed")  # fmt: skip
    assert "(1, 16, 16)" in err.what and "(1, 20, 20)" in err.what


def test_backbone_channels_differ_from_the_data(tmp_path: Path, sets: dict[str, Path]) -> None:
    spec = BackboneSpec(arch="resnet18", image_size=16, in_channels=3, stem="cifar")
    folder = save_backbone(build_backbone(spec), spec, tmp_path / "rgb-backbone")
    _fails(tmp_path, DataError, "3-channel images but the shard set has 1",
           f"data.shards={sets['masks16']}", "model.encoder=resnet", f"model.backbone={folder}")  # fmt: skip


def test_too_few_synthetic_images_for_the_ratio(tmp_path: Path, sets: dict[str, Path]) -> None:
    _fails(tmp_path, DataError, "needs 9 synthetic images",
           f"data.shards={sets['masks16']}", f"data.synthetic={sets['masks16']}",
           "data.synthetic_split=train", "train.training_data=mixed", "train.synthetic_ratio=3")  # fmt: skip


def test_config_rules(tmp_path: Path, sets: dict[str, Path]) -> None:
    shards = f"data.shards={sets['masks16']}"
    _fails(tmp_path, ConfigError, "unknown key 'train.epoch'", shards, "train.epoch=3")
    _fails(tmp_path, ConfigError, "needs data.synthetic", shards, "train.training_data=merging")
    _fails(tmp_path, ConfigError, "would ignore it", shards, f"data.synthetic={sets['masks16']}")
    _fails(tmp_path, ConfigError, "'train.alpha' = 1.2 is out of range", shards, "train.alpha=1.2")
    _fails(tmp_path, ConfigError, "data.shards is not set")
    _fails(tmp_path, ConfigError, "does not exist", "data.shards=/nonexistent/set")
    _fails(tmp_path, ConfigError, "freeze_encoder=true needs a pretrained encoder", shards,
           "model.freeze_encoder=true")  # fmt: skip
    _fails(tmp_path, ConfigError, "'train.lambda_ce' = -1", shards, "train.lambda_ce=-1")
    _fails(tmp_path, ConfigError, "both 0", shards, "train.lambda_ce=0", "train.lambda_dice=0")
    _fails(tmp_path, ConfigError, "needs at least 2 levels", shards, "model.encoder=monai_unet",
           "model.channels=[8]")  # fmt: skip


def test_a_non_empty_output_folder_is_refused_before_training(
    tmp_path: Path, sets: dict[str, Path]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    cfg = load_segment_config(None, [f"data.shards={sets['masks16']}", "train.epochs=1"])
    with pytest.raises(SynmedError, match="not empty"):
        evaluate_segmentation(cfg, out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
