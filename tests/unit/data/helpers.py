"""Small shard sets and image folders written for tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from suite.data.writer import ShardSetWriter


def pattern(index: int, size: int = 16, channels: int = 1) -> np.ndarray:
    """A deterministic (C, H, W) uint8 image for a given index."""
    rng = np.random.default_rng(index)
    return rng.integers(0, 256, size=(channels, size, size), dtype=np.uint8)


def make_shard_set(
    directory: Path,
    n: int = 10,
    *,
    shard_size: int = 4,
    classes: tuple[str, ...] = ("a", "b", "c"),
    size: int = 16,
    masks: bool = False,
    multilabel: bool = False,
    source: str = "real",
) -> Path:
    """Rows i = 0..n-1 with image pattern(i), label i % len(classes), split i % 3."""
    directory.mkdir(parents=True, exist_ok=True)
    attrs = {
        "source": source,
        "class_names": list(classes),
        "label_kind": "multilabel" if multilabel else "multiclass",
    }
    writer = ShardSetWriter(directory, attrs, shard_size=shard_size)
    for i in range(n):
        row: dict = {
            "images": pattern(i, size),
            "index": i,
            "split": i % 3,
            "source": f"img{i}.png",
        }
        if multilabel:
            hot = np.zeros(len(classes), np.uint8)
            hot[i % len(classes)] = 1
            hot[(i + 1) % len(classes)] = i % 2
            row["labels"] = hot
        else:
            row["labels"] = i % len(classes)
        if masks:
            row["masks"] = (pattern(i, size) > 128).astype(np.uint8)
        writer.add(row)
    writer.close()
    return directory


def make_class_folders(
    root: Path, per_class: int = 4, classes=("COVID", "Normal"), size=(24, 20)
) -> Path:
    """The COVID-19 Radiography layout: root/<class>/images/<name>.png (plus a masks/ folder to skip)."""
    for c, name in enumerate(classes):
        (root / name / "images").mkdir(parents=True, exist_ok=True)
        (root / name / "masks").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = np.full(size, 40 * c + i, dtype=np.uint8)
            Image.fromarray(img).save(root / name / "images" / f"{name}-{i}.png")
            Image.fromarray(np.zeros((8, 8), np.uint8)).save(
                root / name / "masks" / f"{name}-{i}.png"
            )
    return root


def square(size: tuple[int, int], box: tuple[int, int, int, int]) -> np.ndarray:
    """(H, W) uint8: 255 inside box (top, left, bottom, right), 0 outside."""
    out = np.zeros(size, dtype=np.uint8)
    top, left, bottom, right = box
    out[top:bottom, left:right] = 255
    return out


def save_png(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def make_busi(root: Path, per_class: int = 3, size: tuple[int, int] = (16, 16)) -> Path:
    """benign/ and malignant/ with one bright square per image and its mask at the same place;
    the first benign image has two masks (its second square in NAME_mask_1.png)."""
    for c, name in enumerate(("benign", "malignant")):
        for i in range(per_class):
            box = (2 + i, 3 + c, 8 + i, 10 + c)
            image = np.full(size, 20, dtype=np.uint8) + square(size, box) // 2
            stem = f"{name} ({i + 1})"
            save_png(root / name / f"{stem}.png", image)
            save_png(root / name / f"{stem}_mask.png", square(size, box))
    save_png(root / "benign" / "benign (1)_mask_1.png", square(size, (12, 12, 15, 15)))
    return root


def make_square_mask_set(directory: Path, n: int = 6) -> Path:
    """Rows whose image is a bright square exactly where the mask is (moving with the row)."""
    directory.mkdir(parents=True)
    attrs = {"source": "real", "class_names": ["a", "b"], "label_kind": "multiclass",
             "mask_names": ["background", "foreground"]}  # fmt: skip
    writer = ShardSetWriter(directory, attrs, shard_size=4)
    for i in range(n):
        mask = np.zeros((1, 16, 16), np.uint8)
        mask[0, 3 + i : 9 + i, 4:12] = 1
        writer.add({"images": (20 + 200 * mask).astype(np.uint8), "masks": mask,
                    "index": 100 + i, "labels": i % 2, "split": i % 3,
                    "source": f"img{i}.png", "group": f"g{i}"})  # fmt: skip
    writer.close()
    return directory


def make_volume_set(
    directory: Path, volumes: int = 6, per_volume: int = 2, size: int = 16, shard_size: int = 5
) -> Path:
    """``volumes`` groups ``vol{v}`` of ``per_volume`` slices, a bright square where the mask is;
    rows shuffled across shards (folds must follow groups, not row order); own split ``i % 3``."""
    directory.mkdir(parents=True)
    attrs = {"source": "real", "mask_names": ["background", "blob"]}
    writer = ShardSetWriter(directory, attrs, shard_size=shard_size)
    for i in np.random.default_rng(0).permutation(volumes * per_volume):
        mask = np.zeros((1, size, size), np.uint8)
        mask[0, 3 : 9 + i % 4, 4:12] = 1
        writer.add({"images": (30 + 150 * mask).astype(np.uint8), "masks": mask,
                    "index": int(i), "split": int(i % 3), "group": f"vol{i // per_volume}"})  # fmt: skip
    writer.close()
    return directory


def make_pairs(real: Path, directory: Path, per_row: int = 2, split: str | None = None) -> Path:
    """What ``synmed sample --conditions REAL --per-condition K`` writes for an image+mask set:
    ``per_row`` versions of each (``split``) row, its mask and its index as ``source_index``."""
    from suite.data.dataset import ShardDataset

    ds = ShardDataset(real, split=split)
    directory.mkdir(parents=True)
    attrs = {"source": "synthetic", "mask_names": ds.manifest.attrs.get("mask_names", [])}
    writer = ShardSetWriter(directory, attrs, shard_size=8)
    for p in range(len(ds)):
        sample = ds[p]
        for k in range(per_row):
            image = np.clip(sample["image"].numpy().astype(int) + 10 * (k + 1), 0, 255)
            writer.add({"images": image.astype(np.uint8), "masks": sample["mask"].numpy(),
                        "index": p * per_row + k, "source_index": sample["index"]})  # fmt: skip
    writer.close()
    return directory
