"""Seed 002's baseline augmentations as MONAI transforms: seeded per sample, masks follow geometry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from suite.errors import ConfigError
from suite.evaluation.segment.augment import AUGMENTS, BaselineAugment
from suite.evaluation.segment.config import load_segment_config
from suite.evaluation.segment.run import evaluate_segmentation
from tests.unit.data.helpers import make_shard_set

GEOMETRIC = {"mirror", "rotate", "scale"}


def _sample(index: int = 3) -> dict:
    g = torch.Generator().manual_seed(index)
    image = torch.randint(0, 256, (1, 16, 16), generator=g, dtype=torch.uint8)
    mask = torch.zeros(1, 16, 16, dtype=torch.uint8)
    mask[0, 2:9, 3:12], mask[0, 11:14, 4:7] = 1, 2
    return {"image": image, "mask": mask, "index": index}


@pytest.mark.parametrize("name", AUGMENTS)
def test_each_augmentation_keeps_shapes_ranges_and_labels(name: str) -> None:
    sample = _sample()
    out = BaselineAugment([name], 1.0, seed=0)(sample, epoch=0)
    assert out["image"].shape == (1, 16, 16) and out["image"].dtype == torch.float32
    assert type(out["image"]) is torch.Tensor  # no MONAI MetaTensor leaks into the batch
    assert out["image"].min() >= 0 and out["image"].max() <= 255
    assert out["mask"].dtype == torch.uint8 and set(out["mask"].unique().tolist()) <= {0, 1, 2}
    assert not torch.equal(out["image"], sample["image"].float())  # prob 1: it did something
    if name not in GEOMETRIC:
        assert torch.equal(out["mask"], sample["mask"])  # intensity only: labels untouched
    assert out["index"] == 3 and torch.equal(sample["image"], _sample()["image"])  # input kept


def test_a_mirror_moves_the_mask_with_the_image() -> None:
    sample = _sample()
    out = BaselineAugment(["mirror"], 1.0, seed=0)(sample, epoch=0)
    assert torch.equal(out["image"], sample["image"].float().flip(-1, -2))  # both axes at prob 1
    assert torch.equal(out["mask"], sample["mask"].flip(-1, -2))


def test_draws_are_seeded_per_run_epoch_and_row() -> None:
    names = list(AUGMENTS)
    a = BaselineAugment(names, 0.5, seed=7)
    first = a(_sample(3), epoch=1)["image"]
    _ = a(_sample(4), epoch=1)  # another row in between changes nothing
    assert torch.equal(a(_sample(3), epoch=1)["image"], first)
    assert torch.equal(BaselineAugment(names, 0.5, seed=7)(_sample(3), epoch=1)["image"], first)
    assert not torch.equal(a(_sample(3), epoch=2)["image"], first)
    assert not torch.equal(BaselineAugment(names, 0.5, seed=8)(_sample(3), epoch=1)["image"], first)


def test_probability_zero_and_no_names_leave_the_sample_alone() -> None:
    sample = _sample()
    assert BaselineAugment([], 0.5, seed=0)(sample, epoch=0) is sample
    out = BaselineAugment(list(AUGMENTS), 0.0, seed=0)(sample, epoch=0)
    assert torch.equal(out["image"], sample["image"].float())
    assert torch.equal(out["mask"], sample["mask"])


def test_a_run_with_augmentations_is_repeatable_and_recorded(tmp_path: Path) -> None:
    real = make_shard_set(tmp_path / "real", n=12, masks=True, size=16)
    overrides = [f"data.shards={real}", "model.channels=[4, 8]", "train.epochs=2",
                 "train.seeds=[0]", "train.batch_size=4", "report.figure_cases=0",
                 "train.augment=[gamma, noise, rotate]", "train.augment_prob=0.8"]  # fmt: skip
    runs = [evaluate_segmentation(load_segment_config(None, overrides), tmp_path / f"out{i}")
            for i in range(2)]  # fmt: skip
    histories = [json.loads((tmp_path / f"out{i}" / "history.json").read_text()) for i in range(2)]
    assert histories[0] == histories[1]
    assert runs[0]["context"]["training_data"]["augment"] == {
        "names": ["gamma", "noise", "rotate"], "prob": 0.8, "library": "monai"}  # fmt: skip


def test_bad_augment_settings_are_refused(tmp_path: Path) -> None:
    real = make_shard_set(tmp_path / "real", n=9, masks=True, size=16)
    with pytest.raises(ConfigError, match="names an augmentation twice"):
        load_segment_config(None, [f"data.shards={real}", "train.augment=[gamma, gamma]"])
    with pytest.raises(ConfigError, match="train.augment"):
        load_segment_config(None, [f"data.shards={real}", "train.augment=[sharpen]"])
    with pytest.raises(ConfigError, match="train.augment_prob"):
        load_segment_config(None, [f"data.shards={real}", "train.augment_prob=1.5"])
