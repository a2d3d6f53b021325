"""`synmed data ingest`: any source format -> one verified shard set with a split column.

Two passes inside a staging folder: (1) read, preprocess and append every record to a scratch HDF5
file while collecting groups and given splits; (2) assign splits, then write the final shards ordered
train, val, test (so one split reads contiguous shards), then ``splits.json`` and the manifest. Any
error, in either pass, removes the staging folder: the output is whole or absent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from tqdm import tqdm

import suite
from suite.config import to_dict
from suite.data.ingest.adapters import resolve_adapter
from suite.data.ingest.base import Record, SourceInfo
from suite.data.ingest.options import IngestOptions
from suite.data.ingest.preprocess import prepare
from suite.data.ingest.splits import assign_splits, slab_groups
from suite.data.shards import SPLITS, Manifest, atomic_write_text
from suite.data.writer import ShardSetWriter, staged_output
from suite.errors import DataError

SCRATCH = "scratch.h5"
SPLITS_FILE = "splits.json"


@dataclass(slots=True)
class _Meta:
    sources: list[str]
    groups: list[str]
    given: list[str | None]
    positions: list[float | None]


def _split_slabs(meta: Any, options: IngestOptions) -> tuple[np.ndarray, list[str]]:
    """Split ids and slab ids. Each volume's slabs are split on their own, so every split holds
    slices of every volume (and of every plane, when a volume is sliced along several)."""
    slabs = slab_groups(meta.groups, [p if p is not None else 0.0 for p in meta.positions])
    volumes = np.asarray(meta.groups)
    split = np.zeros(len(slabs), dtype=np.uint8)
    for volume in dict.fromkeys(meta.groups):
        rows = np.flatnonzero(volumes == volume)
        split[rows] = assign_splits(
            [meta.given[r] for r in rows], [slabs[r] for r in rows],
            options.split_fractions, options.seed,
        )  # fmt: skip
    return split, slabs


def ingest(
    source: Path,
    out: Path,
    options: IngestOptions,
    *,
    overwrite: bool = False,
    progress: bool = True,
    extra_attrs: dict[str, Any] | None = None,
) -> Manifest:
    """Ingest ``source`` into the shard set ``out`` and return its manifest."""
    source = Path(source)
    if not source.exists():
        raise DataError(f"source {source} does not exist", "pass an existing file or folder")
    adapter_cls = resolve_adapter(source, options.format)
    adapter = adapter_cls(source, options)
    info = adapter.info()
    with staged_output(out, overwrite=overwrite) as staging:
        meta = _read_all(adapter.records(), info, options, staging / SCRATCH, progress)
        groups = meta.groups
        if info.split_policy == "slab":
            split, groups = _split_slabs(meta, options)
        else:
            split = assign_splits(meta.given, groups, options.split_fractions, options.seed)
        attrs = {
            "source": "real",
            "format": adapter_cls.name,
            "source_path": str(source.resolve()),
            "class_names": info.class_names,
            "label_kind": info.label_kind,
            "mask_names": info.mask_names,
            "ingest_options": to_dict(options),
            "synmed_version": suite.__version__,
            **(extra_attrs or {}),
        }
        manifest = _write_shards(staging, split, meta, attrs, options, progress)
        _write_split_manifest(staging / SPLITS_FILE, split, groups, info, options, meta)
        (staging / SCRATCH).unlink()
    return manifest


def _check_label(record: Record, info: SourceInfo) -> Any:
    k = len(info.class_names)
    if info.label_kind == "none":
        return None
    label = record.label
    if label is None:
        raise DataError(
            f"{record.source} has no label", "give every image a label or ingest unlabelled"
        )
    if info.label_kind == "multilabel":
        vec = np.asarray(label, dtype=np.uint8).reshape(-1)
        if vec.shape != (k,) or vec.max(initial=0) > 1:
            raise DataError(
                f"{record.source}: multilabel vector {vec.tolist()} does not fit the {k} classes",
                f"classes: {', '.join(info.class_names)}",
            )
        return vec
    if not 0 <= int(label) < k:
        raise DataError(
            f"{record.source}: label {label} is outside the class list ({k} classes)",
            f"classes: {', '.join(info.class_names)}; fix the label or pass --class-names",
        )
    return int(label)


def _bar_total(limit: int | None, expected: int | None) -> int | None:
    if limit is None or expected is None:
        return limit if expected is None else expected
    return min(limit, expected)


class _ScratchWriter:
    """Appends preprocessed rows to the scratch file in blocks (one resize per block, not per row)."""

    def __init__(self, scratch: h5py.File, info: SourceInfo, block: int = 256) -> None:
        self.scratch = scratch
        self.info = info
        self.block = block
        self.buffer: dict[str, list[Any]] = {}

    def append(self, image: np.ndarray, mask: np.ndarray | None, label: Any, source: str) -> None:
        if not self.buffer:
            self.buffer = {"images": []}
            if "images" not in self.scratch:
                self._create(image, mask)
        if ("masks" in self.scratch) != (mask is not None):
            raise DataError(
                f"{source}: some images have masks and some do not",
                "give every image a mask, or none",
            )
        self.buffer["images"].append(image)
        if mask is not None:
            self.buffer.setdefault("masks", []).append(mask)
        if label is not None:
            self.buffer.setdefault("labels", []).append(label)
        if len(self.buffer["images"]) >= self.block:
            self.flush()

    def _create(self, image: np.ndarray, mask: np.ndarray | None) -> None:
        for key, row in (("images", image), ("masks", mask)):
            if row is not None:
                self.scratch.create_dataset(
                    key,
                    shape=(0, *row.shape),
                    maxshape=(None, *row.shape),
                    dtype=np.uint8,
                    chunks=(1, *row.shape),
                )
        if self.info.label_kind == "multilabel":
            k = len(self.info.class_names)
            self.scratch.create_dataset(
                "labels", shape=(0, k), maxshape=(None, k), dtype=np.uint8, chunks=(1024, k)
            )
        elif self.info.label_kind == "multiclass":
            self.scratch.create_dataset(
                "labels", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(4096,)
            )

    def flush(self) -> None:
        for key, rows in self.buffer.items():
            ds = self.scratch[key]
            n = ds.shape[0]
            ds.resize(n + len(rows), axis=0)
            ds[n:] = np.stack(rows)
        self.buffer = {}


def _read_all(
    records: Any, info: SourceInfo, options: IngestOptions, scratch_path: Path, progress: bool
) -> _Meta:
    meta = _Meta([], [], [], [])
    shape: tuple[int, ...] | None = None
    first_source = ""
    with h5py.File(scratch_path, "w") as scratch:
        writer = _ScratchWriter(scratch, info)
        bar = tqdm(
            total=_bar_total(options.limit, info.expected_count),
            desc=f"ingest {info.description}".strip(),
            unit="img",
            disable=not progress,
        )
        for record in records:
            if options.limit is not None and len(meta.sources) >= options.limit:
                break
            label = _check_label(record, info)
            if record.mask is not None and record.mask.shape[:2] != record.image.shape[:2]:
                raise DataError(
                    f"{record.source}: mask {record.mask.shape[:2]} and image {record.image.shape[:2]} differ in size",
                    "give masks the size of their images",
                )
            try:
                image, mask = prepare(record.image, record.intensity, options, record.mask)
            except ValueError as err:
                raise DataError(
                    f"{record.source}: {err}", "convert it to a 2D grayscale or RGB image"
                ) from None
            if shape is None:
                shape, first_source = image.shape, record.source
            elif image.shape != shape:
                raise DataError(
                    f"{record.source} is {image.shape[1]}x{image.shape[2]} but {first_source} is "
                    f"{shape[1]}x{shape[2]}: mixed image sizes",
                    "pass --image-size N (and --aspect pad|crop|stretch) to bring all images to one size",
                )
            writer.append(image, mask, label, record.source)
            meta.sources.append(record.source)
            meta.groups.append(record.group if record.group is not None else record.source)
            meta.given.append(record.split)
            meta.positions.append(record.position)
            bar.update(1)
        writer.flush()
        bar.close()
    if not meta.sources:
        raise DataError(
            f"no images found in the source ({info.description or 'empty'})",
            "check the path and --format; folders need image files (PNG/JPEG/DICOM/NIfTI) inside",
        )
    return meta


def _write_shards(
    staging: Path,
    split: np.ndarray,
    meta: _Meta,
    attrs: dict[str, Any],
    options: IngestOptions,
    progress: bool,
) -> Manifest:
    writer = ShardSetWriter(
        staging, attrs, shard_size=options.shard_size, compression=options.compression
    )
    block = 512
    with h5py.File(staging / SCRATCH, "r") as scratch:
        n = scratch["images"].shape[0]
        bar = tqdm(total=n, desc="write shards", unit="img", disable=not progress)
        index = 0
        for split_id in range(len(SPLITS)):
            for start in range(0, n, block):
                rows = np.flatnonzero(split[start : start + block] == split_id)
                if len(rows) == 0:
                    continue
                chunk = {
                    key: scratch[key][start : start + block]
                    for key in ("images", "masks", "labels")
                    if key in scratch
                }
                for r in rows:
                    row: dict[str, Any] = {key: value[r] for key, value in chunk.items()}
                    row["index"] = index
                    row["split"] = split_id
                    row["source"] = _relative(meta.sources[start + r], attrs["source_path"])
                    row["group"] = meta.groups[start + r]
                    writer.add(row)
                    index += 1
                    bar.update(1)
        bar.close()
    return writer.close()


def _relative(source: str, root: str) -> str:
    """Row provenance relative to the source root (the root itself is in the attributes)."""
    path = Path(source.split("#", 1)[0]).resolve()
    rest = source[len(source.split("#", 1)[0]) :]
    try:
        return (
            str(path.relative_to(Path(root) if Path(root).is_dir() else Path(root).parent)) + rest
        )
    except ValueError:
        return source


def _write_split_manifest(
    path: Path,
    split: np.ndarray,
    groups: list[str],
    info: SourceInfo,
    options: IngestOptions,
    meta: _Meta,
) -> None:
    body: dict[str, Any] = {
        "policy": "given" if all(g is not None for g in meta.given) else info.split_policy,
        "seed": options.seed,
        "fractions": list(options.split_fractions),
        "splits": {},
    }
    for split_id, name in enumerate(SPLITS):
        rows = np.flatnonzero(split == split_id)
        split_groups = sorted({groups[i] for i in rows})
        body["splits"][name] = {
            "count": int(len(rows)),
            "groups": len(split_groups),
            "group_ids": split_groups,
        }
    atomic_write_text(path, json.dumps(body, indent=1))
