"""The rows a classification evaluation reads, checked before anything trains.

:func:`open_evaluation_data` opens the train/val/test rows (and the synthetic pool), maps every
label onto one class order by *name*, and turns each bad input into one
:class:`~suite.errors.DataError`: a set without labels, test and train sets with different class
lists, a synthetic set whose classes are not the real ones, an empty split. Per seed,
:func:`label_fraction` and :func:`synthetic_draw` then pick which training rows are used; they work
on labels only, so every seed's selection is known before features are extracted once for their
union.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from suite.data.dataset import ShardDataset
from suite.errors import DataError, SynmedError
from suite.evaluation.classify.config import ClassifyData, SyntheticConfig


@dataclass(slots=True)
class Rows:
    """Rows of one shard set, with labels in the evaluation's class order.

    ``labels`` is ``(N,)`` int64 for single-label sets and ``(N, K)`` float32 for multi-label ones.
    """

    dataset: ShardDataset
    labels: np.ndarray
    name: str  # for messages and provenance: "<dir>:<split>"

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, positions: np.ndarray) -> RowsSubset:
        return RowsSubset(self, np.asarray(positions, dtype=np.int64))


@dataclass(slots=True)
class RowsSubset:
    rows: Rows
    positions: np.ndarray

    @property
    def labels(self) -> np.ndarray:
        return self.rows.labels[self.positions]


class ImageLabelDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Several row subsets (real train + synthetic) as one Dataset of (uint8 image, label)."""

    def __init__(self, parts: Sequence[RowsSubset]) -> None:
        self.parts = [p for p in parts if len(p.positions)]
        self.offsets = np.cumsum([0] + [len(p.positions) for p in self.parts])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        part_no = int(np.searchsorted(self.offsets, i, side="right") - 1)
        part = self.parts[part_no]
        position = int(part.positions[i - self.offsets[part_no]])
        image = part.rows.dataset[position]["image"]
        return image, torch.as_tensor(part.rows.labels[position])


@dataclass(slots=True)
class EvaluationData:
    class_names: list[str]
    multilabel: bool
    channels: int
    image_size: int
    train: Rows
    val: Rows
    test: Rows
    synthetic: Rows | None


def open_shards(
    directory: Path, what: str, hashed: set[Path] | None = None, **kwargs: object
) -> ShardDataset:
    """Open a set with every shard's sha256 checked; a set already in ``hashed`` (checked by this
    same call of the caller, moments ago) is only checked for presence, and is added to it."""
    if not directory.is_dir():
        raise DataError(f"{what} folder {directory} does not exist", "fix the path in the config")
    key = directory.resolve()
    verify = "size" if hashed is not None and key in hashed else "sha256"
    try:
        ds = ShardDataset(directory, verify=verify, **kwargs)  # type: ignore[arg-type]
    except SynmedError as err:
        raise DataError(f"{what} {directory}: {err.what}", err.fix) from None
    if hashed is not None:
        hashed.add(key)
    return ds


def remap_labels(ds: ShardDataset, names: list[str], what: str, multilabel: bool) -> np.ndarray:
    """The set's labels re-expressed in ``names``' order, matched by class name."""
    if ds.labels is None:
        raise DataError(f"{what} {ds.directory} has no labels", "classification needs labels")
    if multilabel:
        missing = [n for n in names if n not in ds.class_names]
        if missing:
            raise DataError(
                f"{what} {ds.directory} lacks the classes {missing}",
                "use sets with the same class list",
            )
        columns = [ds.class_names.index(n) for n in names]
        return ds.labels[:, columns].astype(np.float32)
    lookup = np.full(len(ds.class_names), -1, dtype=np.int64)
    for new, name in enumerate(names):
        if name in ds.class_names:
            lookup[ds.class_names.index(name)] = new
    mapped = lookup[ds.labels.astype(np.int64)]
    if (mapped < 0).any():  # only possible when rows were not filtered to ``names``
        raise DataError(f"{what} {ds.directory} has rows outside the classes {names}", "filter")
    return mapped


def require_labels(ds: ShardDataset, what: str) -> str:
    if ds.label_kind == "none" or not ds.class_names or ds.labels is None:
        raise DataError(
            f"{what} {ds.directory} has no labels (label_kind {ds.label_kind!r})",
            "classification needs a labelled shard set: ingest one with class labels "
            "(synmed data info DIR shows them)",
        )
    return ds.label_kind


def open_evaluation_data(data: ClassifyData) -> EvaluationData:
    """Open and check every input; raise one DataError for the first problem."""
    if data.shards is None:
        raise DataError("data.shards is not set", "set data.shards to a labelled shard set")
    if not 0.0 < data.label_fraction <= 1.0:
        raise DataError(
            f"data.label_fraction = {data.label_fraction} is outside (0, 1]",
            "use e.g. 0.01, 0.1 or 1.0",
        )
    hashed: set[Path] = set()  # each set's shards are hashed once, at its first open below
    probe = open_shards(data.shards, "data.shards", hashed)
    kind = require_labels(probe, "data.shards")
    multilabel = kind == "multilabel"
    names = list(probe.class_names)
    if data.classes is not None:
        unknown = [c for c in data.classes if c not in names]
        if unknown or len(set(data.classes)) < 2:
            raise DataError(
                f"data.classes {data.classes} must name at least two classes of {data.shards}"
                + (f" ({unknown} are not among them)" if unknown else ""),
                f"classes there: {', '.join(names)}",
            )
        names = [n for n in names if n in data.classes]  # the set's order fixes the ids
    classes = list(data.classes) if data.classes is not None else None

    def split_rows(directory: Path, split: str, what: str) -> Rows:
        ds = open_shards(directory, what, hashed, split=split, classes=classes)
        if len(ds) == 0:
            raise DataError(
                f"{what} {directory} has no {split} rows"
                + (f" of the classes {classes}" if classes else ""),
                f"ingest it with a {split} split (data.split_fractions) or pick another set",
            )
        return Rows(ds, remap_labels(ds, names, what, multilabel), f"{directory}:{split}")

    train = split_rows(data.shards, "train", "data.shards")
    val = split_rows(data.shards, "val", "data.shards")
    if data.test_shards is not None:
        other = open_shards(data.test_shards, "data.test_shards", hashed)
        require_labels(other, "data.test_shards")
        if other.class_names != probe.class_names or other.label_kind != kind:
            raise DataError(
                f"data.test_shards {data.test_shards} has classes {other.class_names} "
                f"({other.label_kind}), but data.shards {data.shards} has {probe.class_names} "
                f"({kind})",
                "test on a set with the same class list in the same order (re-ingest it with "
                "--class-names), or drop data.test_shards to use the test split of data.shards",
            )
        test = split_rows(data.test_shards, "test", "data.test_shards")
    else:
        test = split_rows(data.shards, "test", "data.shards")

    first = train.dataset[0]["image"]
    channels, size = int(first.shape[0]), int(first.shape[-1])
    for rows in (val, test):
        shape = tuple(rows.dataset[0]["image"].shape)
        if shape != tuple(first.shape):
            raise DataError(
                f"{rows.name} has images of shape {shape}, the training rows {tuple(first.shape)}",
                "ingest both sets with the same --image-size and --channels",
            )
    synthetic = None
    if data.synthetic is not None:
        synthetic = _open_synthetic(data.synthetic, names, multilabel, tuple(first.shape), hashed)
    return EvaluationData(names, multilabel, channels, size, train, val, test, synthetic)


def _open_synthetic(
    cfg: SyntheticConfig,
    names: list[str],
    multilabel: bool,
    shape: tuple[int, ...],
    hashed: set[Path],
) -> Rows:
    if cfg.shards is None:
        raise DataError("data.synthetic.shards is not set", "set it to a labelled shard set")
    if multilabel:
        raise DataError(
            "synthetic augmentation of a multi-label set is not supported",
            "drop data.synthetic, or evaluate a single-label set",
        )
    probe = open_shards(cfg.shards, "data.synthetic.shards", hashed)
    require_labels(probe, "data.synthetic.shards")
    if probe.label_kind == "multilabel":
        raise DataError(f"data.synthetic.shards {cfg.shards} is multi-label", "use one label each")
    foreign = [n for n in probe.class_names if n not in names]
    shared = [n for n in probe.class_names if n in names]
    if not shared:
        raise DataError(
            f"data.synthetic.shards {cfg.shards} has classes {probe.class_names}, none of the "
            f"evaluated {names}",
            "generate images of the evaluated classes (classes are matched by name)",
        )
    # every split: all generated
    ds = open_shards(cfg.shards, "data.synthetic.shards", hashed, classes=shared)
    if foreign and len(ds) == 0:
        raise DataError(f"data.synthetic.shards {cfg.shards} has no rows of {names}", "check it")
    if tuple(ds[0]["image"].shape) != shape:
        raise DataError(
            f"data.synthetic.shards {cfg.shards} has images of shape {tuple(ds[0]['image'].shape)}"
            f", the real ones {shape}",
            "sample or ingest the synthetic set at the real set's size and channels",
        )
    for name, count in cfg.per_class.items():
        if name not in names:
            raise DataError(
                f"data.synthetic.per_class names {name!r}, not an evaluated class",
                f"use class names: {', '.join(names)}",
            )
        if count < 0:
            raise DataError(f"data.synthetic.per_class[{name!r}] = {count}", "use counts >= 0")
    for name in cfg.classes:
        if name not in names:
            raise DataError(
                f"data.synthetic.classes names {name!r}, not an evaluated class",
                f"use class names: {', '.join(names)}",
            )
    if cfg.ratio < 0:
        raise DataError(f"data.synthetic.ratio = {cfg.ratio} is negative", "use a ratio >= 0")
    return Rows(ds, remap_labels(ds, names, "data.synthetic.shards", False), f"{cfg.shards}:all")


# -- per-seed selections -------------------------------------------------------------------------


def _strata(labels: np.ndarray) -> np.ndarray:
    """One stratum per row: the class, or for multi-label rows the first positive class (-1 for
    none), so rare findings keep their share."""
    if labels.ndim == 1:
        return labels
    first = labels.argmax(axis=1)
    return np.where(labels.max(axis=1) > 0, first, -1)


def label_fraction(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Positions of a stratified, seeded ``fraction`` of the rows: per stratum ``round(fraction *
    n)``, at least one, so every class stays represented even at 1 % (as in the 1 %/10 % splits
    of semi-supervised ImageNet evaluation, Chen et al., 2020)."""
    if fraction >= 1.0:
        return np.arange(len(labels))
    rng = np.random.default_rng([seed, 0x1ABE1])
    strata = _strata(labels)
    keep: list[np.ndarray] = []
    for value in np.unique(strata):
        members = np.flatnonzero(strata == value)
        n = max(1, int(round(fraction * len(members))))
        keep.append(rng.choice(members, size=n, replace=False))
    return np.sort(np.concatenate(keep))


def synthetic_draw(
    cfg: SyntheticConfig,
    pool_labels: np.ndarray,
    train_labels: np.ndarray,
    class_names: list[str],
    seed: int,
) -> np.ndarray:
    """Positions in the synthetic pool to add to one seed's training rows.

    ``ratio``: ``round(ratio * len(train))`` rows at random; ``per_class``: the given count per
    class name; ``double``: per class in ``classes`` (default: the rarest class of the training
    rows) as many synthetic images as it has real ones, doubling it (seed 004's rule).
    """
    num_classes = len(class_names)
    rng = np.random.default_rng([seed, 0x5E7])
    real = np.bincount(train_labels, minlength=num_classes)
    if cfg.mode == "ratio":
        total = int(round(cfg.ratio * len(train_labels)))
        if total > len(pool_labels):
            raise DataError(
                f"data.synthetic.ratio {cfg.ratio} asks for {total} synthetic images, the set "
                f"has {len(pool_labels)}",
                "lower the ratio or sample more images",
            )
        return np.sort(rng.choice(len(pool_labels), size=total, replace=False))
    if cfg.mode == "per_class":
        wanted = {class_names.index(n): c for n, c in cfg.per_class.items()}
    elif cfg.classes:
        wanted = {class_names.index(n): int(real[class_names.index(n)]) for n in cfg.classes}
    else:
        present = np.flatnonzero(real)
        minority = int(present[np.argmin(real[present])])
        wanted = {minority: int(real[minority])}
    picked: list[np.ndarray] = []
    for class_id, count in sorted(wanted.items()):
        members = np.flatnonzero(pool_labels == class_id)
        if count > len(members):
            raise DataError(
                f"data.synthetic asks for {count} synthetic images of {class_names[class_id]!r}, "
                f"the set has {len(members)}",
                "sample more images of that class, or ask for fewer",
            )
        picked.append(rng.choice(members, size=count, replace=False))
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, np.int64)
