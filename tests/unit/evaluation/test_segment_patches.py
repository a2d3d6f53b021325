"""Patch training and MONAI sliding-window inference (train.patch_size, train.window_overlap)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from suite.errors import ConfigError, DataError
from suite.evaluation.segment.config import load_segment_config
from suite.evaluation.segment.data import open_sets
from suite.evaluation.segment.patches import Window, crop, crop_corner, infer
from suite.evaluation.segment.run import evaluate_segmentation
from suite.evaluation.segment.train import build_model, predict
from tests.unit.data.helpers import make_pairs, make_volume_set

TINY = ["train.epochs=1", "train.seeds=[0]", "train.batch_size=4", "train.merge_patch=4",
        "report.figure_cases=0"]  # fmt: skip


def test_crops_are_seeded_inside_the_image_and_cut_image_and_mask_alike() -> None:
    corners = {crop_corner(0, epoch, 5, (16, 20), 8) for epoch in range(40)}
    assert len(corners) > 10 and all(0 <= t <= 8 and 0 <= left <= 12 for t, left in corners)
    assert crop_corner(0, 3, 5, (16, 20), 8) == crop_corner(0, 3, 5, (16, 20), 8)
    assert crop_corner(0, 3, 5, (16, 16), 16) == (0, 0)
    image = torch.arange(2 * 16 * 20).reshape(2, 16, 20)
    sample = {"image": image, "mask": image[:1] % 7, "index": 5}
    cut = crop(sample, (3, 9), 8)
    assert torch.equal(cut["image"], image[:, 3:11, 9:17])
    assert torch.equal(cut["mask"], image[:1, 3:11, 9:17] % 7) and cut["index"] == 5


@pytest.mark.parametrize("encoder", ["conv", "monai_unet"])
def test_a_window_the_size_of_the_image_predicts_as_the_whole_image(
    tmp_path: Path, encoder: str
) -> None:
    real = make_volume_set(tmp_path / "real")
    cfg = load_segment_config(None, [f"data.shards={real}", f"model.encoder={encoder}",
                                     "model.channels=[4, 8]"])  # fmt: skip
    sets = open_sets(cfg.data, cfg.train)
    torch.manual_seed(0)
    model = build_model(cfg.model, sets)
    model.net.eval()
    images = torch.randn(3, 1, 16, 16)
    with torch.no_grad():
        # one window covering the image, weight 1: the same logits to float rounding
        assert torch.allclose(infer(model.net, images, Window(16, 0.5)), model.net(images),
                              atol=1e-6)  # fmt: skip
    whole, truth = predict(model, sets.report, 4)
    windowed, truth2 = predict(model, sets.report, 4, Window(16, 0.5))
    assert np.array_equal(whole, windowed) and np.array_equal(truth, truth2)
    smaller, _ = predict(model, sets.report, 4, Window(8, 0.5))
    assert smaller.shape == whole.shape  # 8 px windows blended back to 16 px maps


def test_training_on_patches_smaller_than_the_image(tmp_path: Path) -> None:
    real = make_volume_set(tmp_path / "real")
    pairs = make_pairs(real, tmp_path / "pairs", split="train")
    overrides = [f"data.shards={real}", f"data.synthetic={pairs}", "train.training_data=merging",
                 "model.encoder=monai_attention_unet", "model.channels=[4, 8]",
                 "train.patch_size=8", "train.window_overlap=0.25", *TINY, "train.epochs=2",
                 "report.figure_cases=1"]  # fmt: skip
    result = evaluate_segmentation(load_segment_config(None, overrides), tmp_path / "out")
    patches = result["context"]["training_data"]["patches"]
    assert patches["patch_size"] == 8 and patches["window_overlap"] == 0.25
    assert patches["inference"] == "monai.inferers.sliding_window_inference"
    assert 0.0 <= result["metrics"]["dice"]["mean"] <= 1.0
    assert (tmp_path / "out" / "cases.png").is_file()
    again = evaluate_segmentation(load_segment_config(None, overrides), tmp_path / "again")
    assert again["metrics"] == result["metrics"]  # crops are seeded


def test_bad_patch_settings_are_one_error_each(tmp_path: Path) -> None:
    real = make_volume_set(tmp_path / "real")
    out = tmp_path / "out"
    cases = [
        (DataError, r"train.patch_size=32 is larger than the images .* \(16x16\)",
         "at most 16", ["train.patch_size=32"]),
        (ConfigError, "train.patch_size=6 is not divisible by 4", "train.patch_size=4",
         ["train.patch_size=6", "model.encoder=monai_unet", "model.channels=[4, 8, 16]"]),
        (ConfigError, "'train.window_overlap' = 1 is out of range", "train.window_overlap",
         ["train.patch_size=8", "train.window_overlap=1"]),
    ]  # fmt: skip
    for error, match, fix, overrides in cases:
        with pytest.raises(error, match=match) as info:
            cfg = load_segment_config(None, [f"data.shards={real}", *TINY, *overrides])
            evaluate_segmentation(cfg, out)
        assert fix in info.value.fix and not out.exists()
