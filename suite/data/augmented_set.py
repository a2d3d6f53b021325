"""Conventionally augmented copies of real training images, written as a labelled shard set.

Seed 004 (ORT thesis) compares "Original", "+ conventional augmentation" and "+ synthetic" with the
same mixing rule: the selected class is doubled. For the augmentation row the added images are
flipped, rotated, shifted, zoomed and intensity-jittered copies of the class's own training images.
Written as a shard set, that row reaches the classifier by the same path as a sampled set
(``data.synthetic`` with ``mode: double``), so the two rows differ only in where the added images
come from. Each copy is drawn from a generator seeded by (seed, copy, row index)
(:class:`~suite.data.transforms.SeededAugment`): the set is the same on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from suite.config import NonNegativeFloat, PositiveInt, to_dict
from suite.errors import DataError

if TYPE_CHECKING:
    from suite.data.dataset import ShardDataset

# torch is imported by write_augmented_set only: ConventionalAugment is part of the torch-free
# run config (suite/pipeline/config.py).


@dataclass(kw_only=True, slots=True)
class ConventionalAugment:
    """Which training images are copied, how often, and the random transform of each copy.

    The defaults are the usual "conventional" set (a Keras ``ImageDataGenerator``-style flip,
    +-15 degrees, 10 % shift and zoom, 20 % brightness and contrast): the thesis names no settings.
    Turn ``hflip`` off for images whose left and right differ (chest X-rays).
    """

    classes: list[str] = field(default_factory=list)  # empty: the rarest class of the split
    split: Literal["train", "val", "test"] = "train"
    copies: PositiveInt = 1  # augmented copies of each selected image
    hflip: bool = True
    degrees: NonNegativeFloat = 15.0
    translate: NonNegativeFloat = 0.1
    scale: NonNegativeFloat = 0.1
    brightness: NonNegativeFloat = 0.2
    contrast: NonNegativeFloat = 0.2


def rarest_class(ds: ShardDataset) -> str:
    """The class with the fewest (but some) rows of ``ds``: seed 004's minority class."""
    import numpy as np

    assert ds.labels is not None
    counts = np.bincount(ds.labels, minlength=len(ds.class_names))
    present = np.flatnonzero(counts)
    return ds.class_names[int(present[np.argmin(counts[present])])]


def write_augmented_set(
    real: Path,
    out: Path,
    options: ConventionalAugment,
    seed: int,
    *,
    shard_size: int = 1000,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write ``options.copies`` augmented copies of each ``options.split`` image of
    ``options.classes`` in ``real`` to ``out``, labelled as the image they copy. Returns the
    classes copied and the rows written."""
    import numpy as np

    import suite
    from suite.artifacts.digests import sha256_file
    from suite.data.dataset import ShardDataset
    from suite.data.shards import MANIFEST
    from suite.data.transforms import SeededAugment
    from suite.data.verify import verify_shard_set
    from suite.data.writer import ShardSetWriter, staged_output

    verify_shard_set(real)
    probe = ShardDataset(real, verify="none")
    if probe.labels is None or probe.label_kind != "multiclass":
        raise DataError(
            f"{real} has no single-label classes to augment",
            "augment a labelled, single-label set (synmed data ingest with labels)",
        )
    unknown = [c for c in options.classes if c not in probe.class_names]
    if unknown:
        raise DataError(
            f"augment.classes names {unknown}, not classes of {real}",
            f"use some of {', '.join(probe.class_names)}",
        )
    split = ShardDataset(real, split=options.split, verify="none")
    if len(split) == 0:
        raise DataError(f"{real} has no {options.split!r} rows to augment", "ingest with splits")
    classes = list(options.classes) or [rarest_class(split)]
    ds = ShardDataset(real, split=options.split, classes=classes, verify="none")
    settings = to_dict(options)
    augments = [
        SeededAugment(
            seed=seed,
            epoch=copy,
            **{k: v for k, v in settings.items() if k not in ("classes", "split", "copies")},
        )  # fmt: skip
        for copy in range(options.copies)
    ]
    attrs: dict[str, Any] = {
        "source": "augmented",
        "class_names": probe.class_names,
        "label_kind": "multiclass",
        "mask_names": [],
        "augmented_from": {
            "path": str(Path(real).resolve()),
            "manifest_sha256": sha256_file(Path(real) / MANIFEST),
        },
        "augment": {**settings, "classes": classes, "seed": seed},
        "synmed_version": suite.__version__,
    }
    index = 0
    with staged_output(out, overwrite=overwrite, inputs=[real]) as staging:
        writer = ShardSetWriter(staging, attrs, shard_size=shard_size)
        for augment in augments:
            for position in range(len(ds)):
                sample = augment(ds[position])
                writer.add(
                    {
                        "images": sample["image"].numpy(),
                        "labels": np.int64(sample["label"]),
                        "index": index,
                    }
                )
                index += 1
        writer.close()
    return {"classes": classes, "rows": index}
