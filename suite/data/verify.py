"""`synmed data verify`: a shard set is checked against its manifest and the schema, file by file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from suite.artifacts.digests import sha256_file
from suite.data.shards import DATASETS, SPLITS, check_shard, open_shard, read_manifest
from suite.errors import ShardError


@dataclass(slots=True)
class VerifyReport:
    directory: Path
    count: int
    shards: int
    image_shape: tuple[int, ...] | None
    warnings: list[str] = field(default_factory=list)


def verify_shard_set(directory: str | Path, *, digests: bool = True) -> VerifyReport:
    """Check counts, sha256 digests, schema, shapes, labels and index uniqueness, and that each
    shard's attributes (class names, label kind, count) agree with the manifest.

    Raises:
        ShardError: at the first problem, naming the file and what differs.
    """
    directory = Path(directory)
    manifest = read_manifest(directory)
    names = manifest.class_names
    label_kind = manifest.attrs.get("label_kind", "none")
    shape: tuple[int, ...] | None = None
    seen_index: list[np.ndarray] = []
    for rec in manifest.shards:
        path = directory / rec.file
        if not path.is_file():
            raise ShardError(
                f"{path} is listed in the manifest but missing", "re-create the shard set"
            )
        if digests and sha256_file(path) != rec.sha256:
            raise ShardError(
                f"{path}: sha256 differs from the manifest (file changed or truncated)",
                "re-create this shard or re-copy the set",
            )
        with open_shard(path) as h5:
            check_shard(path, h5, rec, manifest)
            for key in ("images", "index"):
                if key not in h5:
                    raise ShardError(f"{path}: dataset {key!r} is missing", "re-create the shard")
            unknown = sorted(set(h5.keys()) - set(DATASETS))
            if unknown:
                raise ShardError(
                    f"{path}: unknown dataset(s) {', '.join(unknown)}", "re-create the shard"
                )
            n = h5["images"].shape[0]
            for key in h5:
                dtype, rank = DATASETS[key]
                ds = h5[key]
                if ds.shape[0] != n:
                    raise ShardError(
                        f"{path}: {key} has {ds.shape[0]} rows, images has {n}", "re-create it"
                    )
                if dtype and ds.dtype != np.dtype(dtype):
                    raise ShardError(
                        f"{path}: {key} is {ds.dtype}, schema says {dtype}", "re-create it"
                    )
                if rank is not None and ds.ndim != rank + 1:
                    raise ShardError(f"{path}: {key} has shape {ds.shape}", "re-create it")
            this_shape = tuple(h5["images"].shape[1:])
            if shape is None:
                shape = this_shape
            elif this_shape != shape:
                raise ShardError(
                    f"{path}: images are {this_shape}, earlier shards {shape}", "one size per set"
                )
            if "masks" in h5 and tuple(h5["masks"].shape[2:]) != this_shape[1:]:
                raise ShardError(
                    f"{path}: masks {h5['masks'].shape[1:]} do not match images {this_shape}",
                    "re-create it",
                )
            index = h5["index"][:]
            seen_index.append(index)
            if n and (int(index.min()) != rec.index_min or int(index.max()) != rec.index_max):
                raise ShardError(
                    f"{path}: index range differs from the manifest", "re-create the set"
                )
            if "labels" in h5:
                labels = h5["labels"][:]
                _check_labels(path, labels, names, label_kind, rec.class_counts)
            if "split" in h5:
                split = h5["split"][:]
                if split.size and int(split.max()) >= len(SPLITS):
                    raise ShardError(
                        f"{path}: split id {int(split.max())} is not 0/1/2", "re-create it"
                    )
                counts = {name: int((split == i).sum()) for i, name in enumerate(SPLITS)}
                if rec.split_counts and counts != rec.split_counts:
                    raise ShardError(
                        f"{path}: split counts {counts} differ from the manifest", "re-create it"
                    )
    all_index = np.concatenate(seen_index) if seen_index else np.zeros(0, np.int64)
    if len(np.unique(all_index)) != len(all_index):
        dup = int(
            np.unique(all_index, return_counts=True)[0][
                np.unique(all_index, return_counts=True)[1] > 1
            ][0]
        )
        raise ShardError(
            f"{directory}: global index {dup} appears more than once",
            "a sample was written twice; re-create the set",
        )
    warnings = [
        f"stray file {p.name} (not in the manifest: an unfinished or killed writer)"
        for p in sorted(directory.glob("shard-*"))
        if p.name not in {r.file for r in manifest.shards}
    ]
    return VerifyReport(directory, manifest.count, len(manifest.shards), shape, warnings)


def _check_labels(
    path: Path, labels: np.ndarray, names: list[str], kind: str, expected: list[int]
) -> None:
    k = len(names)
    if kind == "multilabel":
        if labels.ndim != 2 or labels.shape[1] != k or labels.dtype != np.uint8:
            raise ShardError(
                f"{path}: multilabel labels have shape {labels.shape}, expected (N, {k}) uint8",
                "re-create it",
            )
        counts = [int(c) for c in labels.sum(axis=0)]
    else:
        if labels.ndim != 1 or labels.dtype != np.int64:
            raise ShardError(
                f"{path}: labels have shape {labels.shape} {labels.dtype}, expected (N,) int64",
                "re-create it",
            )
        if labels.size and (labels.min() < 0 or labels.max() >= k):
            raise ShardError(
                f"{path}: label {int(labels.max())} is outside the {k} classes {names}",
                "re-create it",
            )
        counts = [int(c) for c in np.bincount(labels, minlength=k)[:k]]
    if expected and counts != expected:
        raise ShardError(
            f"{path}: class counts {counts} differ from the manifest {expected}", "re-create it"
        )
