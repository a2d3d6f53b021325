"""A whole (tiny) run: result.json shape, per-case CSV, seeds, merging and per-volume cases."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from suite.evaluation.segment.config import load_segment_config
from suite.evaluation.segment.run import evaluate_segmentation
from tests.unit.data.helpers import make_shard_set


@pytest.mark.parametrize("mode", ["real", "mixed", "merging"])
def test_result_json_and_csv(tmp_path: Path, mode: str) -> None:
    real = make_shard_set(tmp_path / "real", n=12, masks=True, size=16)
    synthetic = make_shard_set(tmp_path / "syn", n=8, masks=True, size=16, source="synthetic")
    overrides = [f"data.shards={real}", "train.epochs=2", "train.seeds=[0, 1]", "train.batch_size=4",
                 "model.channels=[4, 8]", f"train.training_data={mode}", "train.merge_patch=4",
                 "report.figure_cases=2", "train.synthetic_ratio=0.5"]  # fmt: skip
    if mode != "real":
        overrides.append(f"data.synthetic={synthetic}")
    if mode == "merging":  # this synthetic set has no source_index to find own versions by
        overrides.append("train.partner=any")
    result = evaluate_segmentation(load_segment_config(None, overrides), tmp_path / "out")

    written = json.loads((tmp_path / "out" / "result.json").read_text())
    assert written == result and result["task"] == "segment"
    assert set(result["metrics"]) == {"dice", "iou", "precision", "recall", "hd95"}
    dice = result["metrics"]["dice"]
    assert len(dice["values"]) == 2 and dice["mean"] == pytest.approx(np.mean(dice["values"]))
    assert dice["std"] == pytest.approx(np.std(dice["values"], ddof=1))
    assert list(result["per_class"]) == ["class1"]  # binary masks, no mask_names: background + 1
    ctx = result["context"]
    assert ctx["seeds"] == [0, 1] and ctx["training_data"]["kind"] == mode
    assert ctx["split_sizes"]["train"] == 4 and ctx["split_sizes"]["test"] == 4  # i % 3 splits
    assert ctx["selection"]["split"] == "val" and not ctx["selection_biased"]
    assert all(0 <= e < 2 for e in ctx["selection"]["best_epoch"])

    with open(tmp_path / "out" / result["per_case"]) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 4 * 2  # seeds x test cases x (class1 + mean)
    seed0 = [float(r["dice"]) for r in rows if r["seed"] == "0" and r["class"] == "mean"]
    assert np.mean(seed0) == pytest.approx(dice["values"][0])
    assert (tmp_path / "out" / "cases.png").stat().st_size > 1000
    assert not list(tmp_path.glob(".out.staging-*"))


def test_group_cases_stack_each_volume(tmp_path: Path) -> None:
    real = make_shard_set(tmp_path / "real", n=12, masks=True, size=16)  # no group column
    cfg = load_segment_config(None, [f"data.shards={real}", "data.cases=group", "train.epochs=1"])
    from suite.errors import DataError

    with pytest.raises(DataError, match="no group column"):
        evaluate_segmentation(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_volumes_as_cases_and_an_ssl_resnet_encoder(tmp_path: Path) -> None:
    from suite.data.writer import ShardSetWriter
    from suite.models.backbones import BackboneSpec, build_backbone, save_backbone

    real = tmp_path / "vols"
    real.mkdir()
    writer = ShardSetWriter(real, {"source": "real", "mask_names": ["background", "blob"]})
    rng = np.random.default_rng(0)
    for i in range(18):  # 6 volumes of 3 slices; volumes 0-1 train, 2-3 val, 4-5 test
        mask = np.zeros((1, 16, 16), np.uint8)
        mask[0, 4:12, 3 + i % 3 : 11] = 1
        image = (mask * 150 + rng.integers(0, 60, mask.shape)).astype(np.uint8)
        writer.add({"images": image, "masks": mask, "index": i, "split": i // 6,
                    "group": f"vol{i // 3}"})  # fmt: skip
    writer.close()
    spec = BackboneSpec(arch="resnet18", image_size=16, in_channels=1, stem="cifar")
    backbone = save_backbone(build_backbone(spec), spec, tmp_path / "ssl")
    cfg = load_segment_config(None, [f"data.shards={real}", "data.cases=group", "train.epochs=1",
                                     "train.seeds=[3]", "model.encoder=resnet",
                                     f"model.backbone={backbone}", "report.figure_cases=1"])  # fmt: skip
    result = evaluate_segmentation(cfg, tmp_path / "out")
    ctx = result["context"]
    assert ctx["cases"] == "group" and ctx["num_cases"] == 2  # vol4, vol5
    assert ctx["encoder"]["encoder"] == "resnet18" and ctx["encoder"]["init"] == f"ssl:{backbone}"
    with open(tmp_path / "out" / "per_case.csv") as f:
        cases = {r["case"] for r in csv.DictReader(f)}
    assert cases == {"vol4", "vol5"}
