"""The shard sets a segmentation run reads, checked before any training, and batches from them.

:func:`open_sets` opens the real set's train/val/report splits and the synthetic set, and raises one
DataError for each problem a run would otherwise hit late: a set without masks, an empty split,
image or mask sizes that differ between the two sets, class lists that differ, a synthetic set too
small for the asked ratio.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset, Subset

from suite.data.dataset import ShardDataset
from suite.errors import DataError
from suite.evaluation.segment.config import SegmentDataConfig, SegmentTrainConfig


@dataclass(slots=True)
class SegmentSets:
    """The opened splits, and what every later step needs to know about them."""

    train: ShardDataset
    val: ShardDataset
    report: ShardDataset
    synthetic: ShardDataset | None
    class_names: list[str]
    image_shape: tuple[int, int, int]  # (C, H, W)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def foreground(self) -> list[int]:
        """Class ids scored (background, id 0, is left out as in DiceCELoss's Dice term)."""
        return list(range(1, self.num_classes))

    def split_sizes(self, report_split: str) -> dict[str, int]:
        sizes = {"train": len(self.train), "val": len(self.val), report_split: len(self.report)}
        if self.synthetic is not None:
            sizes["synthetic"] = len(self.synthetic)
        return sizes


def _open(path: Path, split: str | None, role: str) -> ShardDataset:
    ds = ShardDataset(path, split=split)
    if not ds.has_masks:
        raise DataError(
            f"{role} shard set {path} has no masks: segmentation needs image+mask pairs",
            "ingest it with masks (synmed data ingest ... --mask MASK.nii.gz), or point "
            f"{'data.synthetic' if role == 'synthetic' else 'data.shards'} at a set with masks",
        )
    if len(ds) == 0:
        where = f"split {split!r} of " if split else ""
        raise DataError(
            f"{where}{role} shard set {path} is empty",
            "re-ingest with split_fractions that give every split images"
            if split
            else "point at a set with images",
        )
    return ds


def _shape(ds: ShardDataset) -> tuple[tuple[int, ...], tuple[int, ...]]:
    sample = ds[0]
    return tuple(sample["image"].shape), tuple(sample["mask"].shape)


def _class_names(ds: ShardDataset) -> list[str]:
    names = ds.manifest.attrs.get("mask_names")
    if names:
        return list(names)
    # no names recorded: the largest id in the training masks decides how many classes there are
    top = max(int(ds[i]["mask"].max()) for i in range(len(ds)))
    return ["background", *(f"class{k}" for k in range(1, max(top, 1) + 1))]


def open_sets(data: SegmentDataConfig, train: SegmentTrainConfig) -> SegmentSets:
    """Open and cross-check every split and set the run will read."""
    assert data.shards is not None  # check_config made sure
    sets = {
        split: _open(data.shards, split, "the")
        for split in dict.fromkeys(("train", "val", data.eval_split))
    }
    image_shape, mask_shape = _shape(sets["train"])
    if mask_shape != (1, *image_shape[1:]):
        raise DataError(
            f"{data.shards}: masks are {mask_shape} but images {image_shape}",
            "re-ingest: masks must be (1, H, W) at the images' size",
        )
    class_names = _class_names(sets["train"])
    if len(class_names) < 2:
        raise DataError(
            f"{data.shards} has masks with only {class_names}: nothing to segment",
            "ingest masks with at least one foreground class",
        )
    synthetic = None
    if train.training_data != "real":
        assert data.synthetic is not None
        synthetic = _open(data.synthetic, data.synthetic_split, "synthetic")
        s_image, s_mask = _shape(synthetic)
        if s_image != image_shape or s_mask != mask_shape:
            raise DataError(
                f"image/mask sizes differ: {data.shards} has images {image_shape} and masks "
                f"{mask_shape}, {data.synthetic} has images {s_image} and masks {s_mask}",
                "sample or ingest both sets at the same --image-size and --channels",
            )
        s_names = synthetic.manifest.attrs.get("mask_names")
        if s_names and list(s_names) != class_names:
            raise DataError(
                f"mask classes differ: {data.shards} has {class_names}, {data.synthetic} {s_names}",
                "use synthetic masks with the same class ids as the real ones",
            )
        if train.training_data == "mixed":
            wanted = round(train.synthetic_ratio * len(sets["train"]))
            if wanted > len(synthetic):
                raise DataError(
                    f"train.synthetic_ratio={train.synthetic_ratio} needs {wanted} synthetic images "
                    f"but {data.synthetic} has {len(synthetic)}",
                    f"lower train.synthetic_ratio to at most "
                    f"{len(synthetic) / len(sets['train']):.3g}, or sample more",
                )
    return SegmentSets(
        train=sets["train"],
        val=sets["val"],
        report=sets[data.eval_split],
        synthetic=synthetic,
        class_names=class_names,
        image_shape=image_shape,  # type: ignore[arg-type]
    )


def training_set(sets: SegmentSets, train: SegmentTrainConfig, seed: int) -> Dataset:
    """The rows one seed trains on: real, or real plus a seeded draw of ``ratio * N`` synthetic."""
    if train.training_data != "mixed":
        return sets.train
    assert sets.synthetic is not None
    wanted = round(train.synthetic_ratio * len(sets.train))
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(sets.synthetic), size=wanted, replace=False)
    return ConcatDataset([sets.train, Subset(sets.synthetic, sorted(chosen.tolist()))])


def to_batch(
    samples: list[dict], mean: tuple[float, ...], std: tuple[float, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 samples -> normalised float images ``(B, C, H, W)`` and int64 masks ``(B, H, W)``."""
    images = torch.stack([s["image"] for s in samples]).float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    masks = torch.stack([s_["mask"][0] for s_ in samples]).long()
    return (images - m) / s, masks
