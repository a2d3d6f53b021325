"""`synmed data ingest`: any source format -> one verified shard set with a split column.

Two passes inside a staging folder: (1) read, preprocess and append every record to raw scratch
files while collecting groups and given splits; (2) assign splits, then write the final shards ordered
train, val, test (so one split reads contiguous shards), then ``splits.json`` and the manifest. Any
error, in either pass, removes the staging folder: the output is whole or absent.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from tqdm import tqdm

import suite
from suite.artifacts.files import atomic_write_text, write_error
from suite.config import to_dict
from suite.data.ingest.adapters import resolve_adapter
from suite.data.ingest.base import Record, SourceInfo
from suite.data.ingest.options import IngestOptions
from suite.data.ingest.preprocess import prepare
from suite.data.ingest.splits import assign_splits, slab_groups
from suite.data.shards import SPLITS, Manifest
from suite.data.writer import ShardSetWriter, staged_output
from suite.errors import DataError

SCRATCH = ".scratch"
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
    if options.min_mask_pixels and not info.mask_names:
        raise DataError(
            f"--min-mask-pixels {options.min_mask_pixels} counts mask pixels, but {source} "
            f"({info.description or adapter_cls.name}) has no masks",
            "drop --min-mask-pixels, or ingest a source with masks (NIfTI with --mask or "
            "labelsTr/, or an image_masks folder)",
        )
    inputs = (source, options.images_dir, *options.mask)
    with staged_output(out, overwrite=overwrite, inputs=inputs) as staging:
        scratch = _Scratch(staging / SCRATCH, info)
        meta = _read_all(adapter.records(), info, options, scratch, progress)
        groups = meta.groups
        if info.split_policy == "slab":
            split, groups = _split_slabs(meta, options)
            # a row's group is the unit its split keeps whole: here a slab of its volume (so
            # cross-validation folds, which keep groups whole, cut a single volume by slab too)
            meta.groups = groups
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
        manifest = _write_shards(staging, scratch, split, meta, attrs, options, progress)
        _write_split_manifest(staging / SPLITS_FILE, split, groups, info, options, meta)
        shutil.rmtree(staging / SCRATCH)
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


class _Scratch:
    """Preprocessed rows appended to raw files in the staging folder, read back by memory map.

    Plain files rather than HDF5: a write that fails for want of space is then one OSError naming
    the file, where an HDF5 file left half-written makes h5py crash the process when it closes.
    """

    def __init__(self, folder: Path, info: SourceInfo) -> None:
        self.folder = folder
        self.info = info
        self.count = 0
        self.layout: dict[str, tuple[np.dtype, tuple[int, ...]]] = {}
        self.files: dict[str, BinaryIO] = {}

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.bin"

    def append(self, image: np.ndarray, mask: np.ndarray | None, label: Any, source: str) -> None:
        row: dict[str, np.ndarray] = {"images": image}
        if mask is not None:
            row["masks"] = mask
        if label is not None:
            dtype = np.uint8 if self.info.label_kind == "multilabel" else np.int64
            row["labels"] = np.asarray(label, dtype=dtype)
        if self.count == 0:
            self.folder.mkdir()
            self.layout = {k: (np.dtype(v.dtype), v.shape) for k, v in row.items()}
        if ("masks" in self.layout) != (mask is not None):
            raise DataError(
                f"{source}: some images have masks and some do not",
                "give every image a mask, or none",
            )
        for key, value in row.items():
            data = np.ascontiguousarray(value, dtype=self.layout[key][0]).tobytes()
            try:
                if key not in self.files:
                    self.files[key] = open(self.path(key), "wb")  # noqa: SIM115 (closed in close())
                self.files[key].write(data)
            except OSError as err:
                raise write_error(self.path(key), err) from err
        self.count += 1

    def close(self) -> None:
        """Flush and close the files; the first one that fails is the error (all are closed)."""
        failed: tuple[str, OSError] | None = None
        for key, f in self.files.items():
            try:
                f.close()
            except OSError as err:
                failed = failed or (key, err)
        if failed is not None:
            raise write_error(self.path(failed[0]), failed[1]) from failed[1]

    def rows(self, key: str) -> np.ndarray | None:
        if key not in self.layout:
            return None
        dtype, shape = self.layout[key]
        return np.memmap(self.path(key), dtype=dtype, mode="r", shape=(self.count, *shape))


def _read_all(
    records: Any, info: SourceInfo, options: IngestOptions, scratch: _Scratch, progress: bool
) -> _Meta:
    meta = _Meta([], [], [], [])
    shape: tuple[int, ...] | None = None
    first_source = ""
    dropped, largest = 0, 0
    bar = tqdm(
        total=_bar_total(options.limit, info.expected_count),
        desc=f"ingest {info.description}".strip(),
        unit="img",
        disable=not progress,
    )
    try:
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
            if mask is not None and options.min_mask_pixels:
                pixels = int(np.count_nonzero(mask))
                if pixels < options.min_mask_pixels:
                    dropped, largest = dropped + 1, max(largest, pixels)
                    continue
            if shape is None:
                shape, first_source = image.shape, record.source
            elif image.shape != shape:
                raise DataError(
                    f"{record.source} is {image.shape[1]}x{image.shape[2]} but {first_source} is "
                    f"{shape[1]}x{shape[2]}: mixed image sizes",
                    "pass --image-size N (and --aspect pad|crop|stretch) to bring all images to one size",
                )
            scratch.append(image, mask, label, record.source)
            meta.sources.append(record.source)
            meta.groups.append(record.group if record.group is not None else record.source)
            meta.given.append(record.split)
            meta.positions.append(record.position)
            bar.update(1)
    finally:
        bar.close()
        scratch.close()
    if not meta.sources and dropped:
        raise DataError(
            f"all {dropped} images were dropped by --min-mask-pixels {options.min_mask_pixels}; "
            f"the largest mask has {largest} pixels > 0 (at the stored size)",
            f"pass --min-mask-pixels {largest} or less to keep the fullest, or 0 to keep every image"
            if largest
            else "every mask is empty: pass --min-mask-pixels 0 to keep every image",
        )
    if not meta.sources:
        raise DataError(
            f"no images found in the source ({info.description or 'empty'})",
            "check the path and --format; folders need image files (PNG/JPEG/DICOM/NIfTI) inside",
        )
    return meta


def _write_shards(
    staging: Path,
    scratch: _Scratch,
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
    columns = {key: scratch.rows(key) for key in ("images", "masks", "labels")}
    n = scratch.count
    bar = tqdm(total=n, desc="write shards", unit="img", disable=not progress)
    index = 0
    for split_id in range(len(SPLITS)):
        for start in range(0, n, block):
            rows = np.flatnonzero(split[start : start + block] == split_id)
            if len(rows) == 0:
                continue
            chunk = {
                key: np.asarray(value[start : start + block])
                for key, value in columns.items()
                if value is not None
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
