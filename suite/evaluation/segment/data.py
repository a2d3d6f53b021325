"""The shard sets a segmentation run reads, checked before any training, and batches from them.

:func:`open_sets` opens the real set's train/val/report splits (the set's own, or one
cross-validation fold's from :mod:`suite.data.folds`) and the synthetic set, and raises one
DataError for each problem a run would otherwise hit late: a set without masks, an empty split,
image or mask sizes that differ between the two sets, class lists that differ, a synthetic set too
small for the asked ratio, merging partners missing, patches larger than the images.

Synthetic rows with a ``source_index`` (pairs sampled with ``synmed sample --conditions REAL``)
are kept only if that index is a training row of the real set (of the fold): pairs drawn from val
or test masks would leak them into training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset, Subset

from suite.data.dataset import ShardDataset
from suite.data.folds import fold_groups, fold_name, fold_splits
from suite.data.shards import SPLITS
from suite.errors import DataError
from suite.evaluation.segment.config import SegmentDataConfig, SegmentTrainConfig


class Rows(Dataset):
    """Some rows of a :class:`ShardDataset` (a fold's split, the usable synthetic rows), with the
    attributes a run reads of a whole one."""

    def __init__(self, ds: ShardDataset | Rows, positions: np.ndarray) -> None:
        self.ds, self.positions = ds, np.asarray(positions, dtype=np.int64)
        self.directory, self.manifest, self.has_masks = ds.directory, ds.manifest, ds.has_masks
        self.indices = ds.indices[self.positions]

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, position: int) -> dict:
        return self.ds[int(self.positions[position])]

    def __getitems__(self, positions: list[int]) -> list[dict]:
        return self.ds.__getitems__([int(self.positions[p]) for p in positions])

    def read_column(self, key: str) -> np.ndarray | None:
        column = self.ds.read_column(key)
        return None if column is None else column[self.positions]


Split = ShardDataset | Rows


@dataclass(slots=True)
class SegmentSets:
    """The opened splits, and what every later step needs to know about them."""

    train: Split
    val: Split
    report: Split
    synthetic: Split | None
    class_names: list[str]
    image_shape: tuple[int, int, int]  # (C, H, W)
    fold: int = 0
    # folds > 1: the group ids of each split of this fold
    groups: dict[str, list[str]] | None = None
    # the synthetic rows read, and those kept (source_index among the training rows)
    synthetic_rows: dict[str, Any] | None = None
    # train.partner=own: real training index -> positions of its synthetic versions
    partners: dict[int, np.ndarray] | None = None

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


def _shape(ds: Split) -> tuple[tuple[int, ...], tuple[int, ...]]:
    sample = ds[0]
    return tuple(sample["image"].shape), tuple(sample["mask"].shape)


def _class_names(ds: Split) -> list[str]:
    names = ds.manifest.attrs.get("mask_names")
    if names:
        return list(names)
    # no names recorded: the largest id in the training masks decides how many classes there are
    top = max(int(ds[i]["mask"].max()) for i in range(len(ds)))
    return ["background", *(f"class{k}" for k in range(1, max(top, 1) + 1))]


def _real_splits(data: SegmentDataConfig, fold: int) -> tuple[dict[str, Split], Any]:
    """The train, val and report splits: the set's own, or fold ``fold``'s (and its groups)."""
    assert data.shards is not None  # check_config made sure
    if data.folds == 1:
        names = dict.fromkeys(("train", "val", data.eval_split))
        return {split: _open(data.shards, split, "the") for split in names}, None
    every = _open(data.shards, None, "the")
    groups = every.read_column("group")
    if groups is None:
        raise DataError(
            f"{data.shards} has no group column, so data.folds={data.folds} has no volumes or "
            "patients to keep together",
            "ingest the set with synmed data ingest (it records volumes, patients or slabs as "
            "groups), or set data.folds=1",
        )
    args = (groups, data.folds, fold, data.fold_val_fraction, data.fold_shuffle_seed)
    split = fold_splits(*args, source=str(data.shards))
    sets: dict[str, Split] = {
        name: Rows(every, np.flatnonzero(split == i)) for i, name in enumerate(SPLITS)
    }
    return sets, fold_groups(*args, source=str(data.shards))


def _synthetic_path(data: SegmentDataConfig, fold: int) -> Path | None:
    if data.synthetic_folds is not None:
        return data.synthetic_folds[fold]
    return data.synthetic


def _training_rows_only(
    synthetic: ShardDataset, path: Path, train: Split, data: SegmentDataConfig, fold: int
) -> tuple[Split, dict[str, Any]]:
    """The synthetic rows made from a training row (all of them where there is no source_index)."""
    made_from = synthetic.read_column("source_index")
    if made_from is None:
        if data.folds > 1 and data.synthetic_folds is None:
            raise DataError(
                f"{path} has no source_index column, so with data.folds={data.folds} nothing "
                "tells which of its rows were made from another fold's test masks",
                f"sample pairs per fold (synmed data folds, then synmed sample --conditions "
                f"DIR/{fold_name(fold)} --conditions-split train) and list them in "
                "data.synthetic_folds, or sample from the real set with --conditions REAL",
            )
        return synthetic, {"rows": len(synthetic), "kept": len(synthetic), "filter": None}
    keep = np.flatnonzero(np.isin(made_from, train.indices))
    counts = {"rows": len(synthetic), "kept": int(len(keep)),
              "filter": "source_index among the training rows"}  # fmt: skip
    if len(keep) == 0:
        raise DataError(
            f"none of the {len(synthetic)} rows of {path} was made from a training row of "
            f"{data.shards}{f' ({fold_name(fold)})' if data.folds > 1 else ''}: their "
            "source_index values name val/test rows or another set's",
            "sample the pairs from the training rows: synmed sample --conditions REAL "
            "--conditions-split train --per-condition K",
        )
    return (synthetic if len(keep) == len(synthetic) else Rows(synthetic, keep)), counts


def _own_partners(
    synthetic: Split, path: Path, train: Split, data: SegmentDataConfig, fold: int
) -> dict[int, np.ndarray]:
    """Each real training row's synthetic versions, by ``source_index``."""
    made_from = synthetic.read_column("source_index")
    where = f"DIR/{fold_name(fold)} --conditions-split train" if data.folds > 1 else "REAL"
    if made_from is None:
        raise DataError(
            f"train.partner=own draws each real slice's partner from its own synthetic versions, "
            f"but {path} has no source_index column to find them by",
            f"sample the pairs with synmed sample --conditions {where} --per-condition K, or set "
            "train.partner=any",
        )
    order = np.argsort(made_from, kind="stable")
    found, starts = np.unique(made_from[order], return_index=True)
    versions = dict(zip(found.tolist(), np.split(order, starts[1:]), strict=True))
    missing = [int(i) for i in train.indices if int(i) not in versions]
    if missing:
        raise DataError(
            f"{len(missing)} of the {len(train)} training rows of {data.shards}"
            f"{f' ({fold_name(fold)})' if data.folds > 1 else ''} have no synthetic version in "
            f"{path} (index {', '.join(map(str, missing[:5]))}{'...' if len(missing) > 5 else ''})",
            f"sample the pairs with synmed sample --conditions {where} --per-condition K, or set "
            "train.partner=any",
        )
    return {int(i): versions[int(i)] for i in train.indices}


def open_sets(data: SegmentDataConfig, train: SegmentTrainConfig, fold: int = 0) -> SegmentSets:
    """Open and cross-check every split and set the run (of fold ``fold``) will read."""
    assert data.shards is not None  # check_config made sure
    sets, groups = _real_splits(data, fold)
    image_shape, mask_shape = _shape(sets["train"])
    if mask_shape != (1, *image_shape[1:]):
        raise DataError(
            f"{data.shards}: masks are {mask_shape} but images {image_shape}",
            "re-ingest: masks must be (1, H, W) at the images' size",
        )
    if train.patch_size is not None and train.patch_size > min(image_shape[1:]):
        raise DataError(
            f"train.patch_size={train.patch_size} is larger than the images of {data.shards} "
            f"({image_shape[1]}x{image_shape[2]})",
            f"set train.patch_size to at most {min(image_shape[1:])}, or train.patch_size=null "
            "(whole images)",
        )
    class_names = _class_names(sets["train"])
    if len(class_names) < 2:
        raise DataError(
            f"{data.shards} has masks with only {class_names}: nothing to segment",
            "ingest masks with at least one foreground class",
        )
    synthetic: Split | None = None
    synthetic_rows = partners = None
    path = _synthetic_path(data, fold)
    if train.training_data != "real":
        assert path is not None
        opened = _open(path, data.synthetic_split, "synthetic")
        s_image, s_mask = _shape(opened)
        if s_image != image_shape or s_mask != mask_shape:
            raise DataError(
                f"image/mask sizes differ: {data.shards} has images {image_shape} and masks "
                f"{mask_shape}, {path} has images {s_image} and masks {s_mask}",
                "sample or ingest both sets at the same --image-size and --channels",
            )
        s_names = opened.manifest.attrs.get("mask_names")
        if s_names and list(s_names) != class_names:
            raise DataError(
                f"mask classes differ: {data.shards} has {class_names}, {path} {s_names}",
                "use synthetic masks with the same class ids as the real ones",
            )
        synthetic, synthetic_rows = _training_rows_only(opened, path, sets["train"], data, fold)
        if train.training_data == "mixed":
            wanted = round(train.synthetic_ratio * len(sets["train"]))
            if wanted > len(synthetic):
                raise DataError(
                    f"train.synthetic_ratio={train.synthetic_ratio} needs {wanted} synthetic images "
                    f"but {path} has {len(synthetic)}"
                    f"{' made from training rows' if synthetic_rows['filter'] else ''}",
                    f"lower train.synthetic_ratio to at most "
                    f"{len(synthetic) / len(sets['train']):.3g}, or sample more",
                )
        if train.training_data == "merging" and train.partner == "own":
            partners = _own_partners(synthetic, path, sets["train"], data, fold)
    return SegmentSets(
        train=sets["train"],
        val=sets["val"],
        report=sets[data.eval_split],
        synthetic=synthetic,
        class_names=class_names,
        image_shape=image_shape,  # type: ignore[arg-type]
        fold=fold,
        groups=groups,
        synthetic_rows=synthetic_rows,
        partners=partners,
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
