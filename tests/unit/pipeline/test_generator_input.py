"""A run whose generator cannot train on what its ingest stage writes is refused at plan time,
with one error naming both sides and the fix, before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from suite.config import load_config
from suite.errors import ConfigError
from suite.pipeline.config import PipelineConfig
from suite.pipeline.runner import plan

REPO = Path(__file__).resolve().parents[3]
MEDCLS = REPO / "configs" / "papers" / "medcls" / "run_simclr_resnet18.yaml"
QUICKSTART = REPO / "configs" / "quickstart.yaml"


def refused(path: Path, tmp_path: Path, *overrides: str) -> ConfigError:
    weights = tmp_path / "weights.pth"  # the imagenet rows need a file; any file stands in
    weights.write_bytes(b"")
    cfg = load_config(
        path,
        [f"run.out_dir={tmp_path}", f"pretrain.imagenet_weights={weights}", *overrides],
        schema=PipelineConfig,
    )
    with pytest.raises(ConfigError) as err:
        plan(cfg)
    assert not (tmp_path / cfg.run.name).exists()  # refused before any output
    return err.value


def test_a_generator_smaller_than_the_ingested_images_is_refused(tmp_path: Path) -> None:
    err = refused(MEDCLS, tmp_path, "generator.model.image_size=64")
    assert "generator.model takes 1-channel 64 px images" in err.what
    assert "ingest stage writes 1-channel 224 px images" in err.what
    assert err.fix is not None and "generator.model.image_size=224" in err.fix


def test_a_channel_mismatch_is_refused(tmp_path: Path) -> None:
    err = refused(QUICKSTART, tmp_path, "ingest.channels=3")
    assert "1-channel 32 px" in err.what and "3-channel 32 px" in err.what


def test_a_class_count_unlike_the_class_list_is_refused(tmp_path: Path) -> None:
    err = refused(MEDCLS, tmp_path, "generator.model.num_classes=3")
    assert "num_classes=3" in err.what and "lists 4 classes" in err.what
    assert err.fix == "set generator.model.num_classes=4"


def test_per_class_sampling_must_add_up(tmp_path: Path) -> None:
    err = refused(MEDCLS, tmp_path, "sample.num_images=100")
    assert "sample.num_images=100 differs from sample.per_class=1200 x" in err.what
    assert err.fix == "set sample.num_images=4800"


def test_shards_given_as_they_are_are_left_to_training(tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    shards.mkdir()  # their size is only known once read: training checks it
    cfg = load_config(
        QUICKSTART,
        [f"run.out_dir={tmp_path}", f"ingest.shards={shards}", "generator.model.image_size=64"],
        schema=PipelineConfig,
    )
    _, steps = plan(cfg)
    assert steps[1].stage == "generator" and steps[1].action == "run"
