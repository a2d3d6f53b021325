"""`synmed data export`: a shard set as a plain folder of PNGs plus labels.csv, for people and other tools."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from suite.data.dataset import ShardDataset
from suite.data.shards import SPLITS
from suite.data.writer import staged_output


def _plain(label: object) -> object:
    return label.numpy() if isinstance(label, torch.Tensor) else label


def _label_text(label: object, class_names: list[str]) -> str:
    if label is None:
        return ""
    if isinstance(label, int):
        return class_names[label]
    hot = np.asarray(label).astype(bool)
    return "|".join(n for n, on in zip(class_names, hot) if on)


def export_folder(
    directory: Path,
    to: Path,
    *,
    split: str | None = None,
    limit: int | None = None,
    overwrite: bool = False,
) -> int:
    """Write ``images/<index>.png`` (and ``masks/<index>.png``) plus ``labels.csv``; returns the count.

    labels.csv has one row per image: file, index, split, label (class name; multilabel names joined
    by "|"), mask file and source.
    """
    data = ShardDataset(directory, split=split)
    count = len(data) if limit is None else min(limit, len(data))
    with staged_output(to, overwrite=overwrite, inputs=[directory]) as staging:
        (staging / "images").mkdir()
        if data.has_masks:
            (staging / "masks").mkdir()
        splits = data.read_column("split")
        sources = data.read_column("source")
        with open(staging / "labels.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "index", "split", "label", "mask", "source"])
            for pos in tqdm(range(count), desc="export", unit="img"):
                sample = data[pos]
                name = f"{sample['index']:08d}.png"
                image = sample["image"].numpy()
                Image.fromarray(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)).save(
                    staging / "images" / name
                )
                mask_file = ""
                if "mask" in sample:
                    mask_file = f"masks/{name}"
                    Image.fromarray(sample["mask"].numpy()[0]).save(staging / mask_file)
                writer.writerow(
                    [
                        f"images/{name}",
                        sample["index"],
                        SPLITS[splits[pos]] if splits is not None else "",
                        _label_text(_plain(sample.get("label")), data.class_names),
                        mask_file,
                        sources[pos] if sources is not None else "",
                    ]
                )
    return count
