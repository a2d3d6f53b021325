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
