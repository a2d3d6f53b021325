"""The HDF5 shard store: file format, the one-file writer, and the manifest.

A shard set is a folder::

    manifest.json        written last, atomically; the only way a reader learns which shards exist
    shard-00000.h5 ...   one writer per file; written as shard-00000.h5.tmp, fsync'd, then renamed

Each shard holds ``images`` (N, C, H, W) uint8, chunked one image per chunk and compressed, and
``index`` (N,) int64, the global sample index. Optional datasets: ``labels`` (N,) int64 (multiclass)
or (N, K) uint8 (multilabel), ``masks`` (N, 1, H, W) uint8, ``split`` (N,) uint8 (0 train, 1 val,
2 test), ``features`` (N, D) float32, ``cluster`` (N,) int32 (``representative`` (N,) int32 beside
it), and since schema version 2 ``prompts``
(N,) UTF-8 strings (the text a row was generated from), ``source_index`` (N,) int64 (the index of
the conditioning row a generated row came from, so image+mask pairs stay paired) and ``metadata``
(N,) UTF-8 JSON objects (what a generator family records per row); a set sampled with ``--accept``
adds ``attempts`` (N,) int64, ``confidence`` (N,) float32 and ``accepted`` (N,) bool. File attributes
carry the schema version and provenance; the manifest lists each shard with its count, sha256 and
per-class counts. Sets of every version in :data:`READABLE_VERSIONS` are read.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from suite.artifacts.files import atomic_write_text, write_bytes_atomic
from suite.errors import ShardError

# in every folder synmed wrote: only such folders are replaced by --overwrite
MARKER = ".synmed-output"
SCHEMA_VERSION = 2
# 1: the columns up to ``group``; 2: adds the optional ``prompts`` and ``source_index``
READABLE_VERSIONS = (1, 2)
MANIFEST = "manifest.json"
SPLITS = ("train", "val", "test")
# dtype and rank (without N) of every dataset a shard may hold; None = any trailing shape.
DATASETS: dict[str, tuple[str, int | None]] = {
    "images": ("uint8", 3),
    "index": ("int64", 0),
    "labels": ("", None),  # int64 (N,) multiclass, uint8 (N, K) multilabel
    "masks": ("uint8", 3),
    "split": ("uint8", 0),
    "features": ("float32", 1),
    "cluster": ("int32", 0),  # -1: a row the clustering left out (another class or split)
    # a cluster's representatives: rank among them, 1 = nearest the centroid; 0 = not one
    "representative": ("int32", 0),
    "source": ("", 0),  # the file (and frame or slice) a real image came from; UTF-8 strings
    "group": ("", 0),  # patient, volume or (one volume) slab id that the split kept together
    "prompts": ("", 0),  # the text prompt a generated row was made from
    "source_index": ("int64", 0),  # the conditioning row a generated row came from
    "metadata": ("", 0),  # per-row JSON a generator family adds (attempts, guidance...)
    # classifier-in-the-loop sampling (suite/sampling/acceptance.py): per row, the attempts drawn,
    # the classifier's probability of the row's label at the last one, and whether it passed
    "attempts": ("int64", 0),
    "confidence": ("float32", 0),
    "accepted": ("bool", 0),
}
STRING_DATASETS = ("source", "group", "prompts", "metadata")


def shard_name(number: int) -> str:
    return f"shard-{number:05d}.h5"


@dataclass(slots=True)
class ShardRecord:
    """One shard as the manifest lists it."""

    file: str
    count: int
    sha256: str
    index_min: int
    index_max: int
    class_counts: list[int] = field(default_factory=list)
    split_counts: dict[str, int] = field(default_factory=dict)


def _class_counts(labels: np.ndarray | None, num_classes: int) -> list[int]:
    if labels is None or num_classes == 0:
        return []
    if labels.ndim == 2:  # multilabel: positives per class
        return [int(c) for c in labels.sum(axis=0)]
    return [int(c) for c in np.bincount(labels, minlength=num_classes)[:num_classes]]


def write_shard(
    directory: Path,
    number: int,
    arrays: Mapping[str, np.ndarray],
    attrs: Mapping[str, Any],
    *,
    compression: str = "lzf",
) -> ShardRecord:
    """Write one shard file atomically and return its manifest record.

    The file is written as ``shard-NNNNN.h5.tmp``, fsync'd and renamed, so a crash leaves either no
    shard or a whole one; a stale ``.tmp`` from a killed writer is overwritten. A failed write
    removes the ``.tmp`` and raises a :class:`DataError` naming the file (an :class:`OutOfSpace`
    for a full disk, a file-size limit or a quota).

    Args:
        directory: The shard set folder (must exist).
        number: The shard number; the file is ``shard-{number:05d}.h5``.
        arrays: ``images`` and ``index`` at least, plus any optional dataset of :data:`DATASETS`.
        attrs: Set-level attributes (class names, provenance); the schema version is added here.
        compression: "lzf" (fast, the default), "gzip" (smaller) or "none".
    """
    _check_arrays(arrays)
    images = arrays["images"]
    n = len(images)
    final = directory / shard_name(number)
    # built in memory (the core driver's image is byte-identical to a file written in place) and
    # written with plain I/O: an HDF5 file that fails a write on a full disk is left unclosable, and
    # h5py then crashes the process; a failed os.write() is one clean OSError
    image = _shard_image(arrays, attrs, n, compression)
    write_bytes_atomic(final, image)
    class_names = attrs.get("class_names") or []
    labels = arrays.get("labels")
    split = arrays.get("split")
    return ShardRecord(
        file=final.name,
        count=n,
        sha256=hashlib.sha256(image).hexdigest(),
        index_min=int(arrays["index"].min()) if n else 0,
        index_max=int(arrays["index"].max()) if n else -1,
        class_counts=_class_counts(labels, len(class_names)),
        split_counts=(
            {name: int((split == i).sum()) for i, name in enumerate(SPLITS)}
            if split is not None
            else {}
        ),
    )


def _shard_image(
    arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any], n: int, compression: str
) -> bytes:
    comp = None if compression == "none" else compression
    # a unique name: HDF5 refuses a second open file of the same name, even one held in memory
    with h5py.File(
        f"shard-{uuid.uuid4().hex}.h5", "w", libver="latest", driver="core", backing_store=False
    ) as h5:
        for key, value in arrays.items():
            if key in STRING_DATASETS:
                h5.create_dataset(
                    key, data=np.asarray(value, dtype=object), dtype=h5py.string_dtype()
                )
                continue
            value = np.ascontiguousarray(value)
            chunks = (1, *value.shape[1:]) if key in ("images", "masks") else None
            h5.create_dataset(
                key,
                data=value,
                chunks=chunks,
                compression=comp if key in ("images", "masks") else None,
            )
        h5.attrs["schema_version"] = SCHEMA_VERSION
        h5.attrs["count"] = n
        for key, value in attrs.items():
            h5.attrs[key] = json.dumps(value) if isinstance(value, dict | list) else value
        h5.flush()
        return h5.id.get_file_image()


def _check_arrays(arrays: Mapping[str, np.ndarray]) -> None:
    for key in ("images", "index"):
        if key not in arrays:
            raise ValueError(f"a shard needs the dataset {key!r}")
    n = len(arrays["images"])
    for key, value in arrays.items():
        if key not in DATASETS:
            raise ValueError(f"unknown shard dataset {key!r}; allowed: {', '.join(DATASETS)}")
        dtype, rank = DATASETS[key]
        if len(value) != n:
            raise ValueError(f"shard dataset {key!r} has {len(value)} rows, images has {n}")
        if dtype and value.dtype != np.dtype(dtype):
            raise ValueError(f"shard dataset {key!r} must be {dtype}, got {value.dtype}")
        if rank is not None and value.ndim != rank + 1:
            raise ValueError(f"shard dataset {key!r} must have {rank + 1} dims, got {value.shape}")


# --------------------------------------------------------------------------------------------------
# manifest


@dataclass(slots=True)
class Manifest:
    """The table of contents of a shard set; ``attrs`` holds set-level provenance."""

    shards: list[ShardRecord]
    attrs: dict[str, Any]
    schema_version: int = SCHEMA_VERSION

    @property
    def count(self) -> int:
        return sum(s.count for s in self.shards)

    @property
    def class_names(self) -> list[str]:
        return list(self.attrs.get("class_names") or [])

    def class_counts(self) -> list[int]:
        totals = [0] * len(self.class_names)
        for s in self.shards:
            for i, c in enumerate(s.class_counts):
                totals[i] += c
        return totals

    def split_counts(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for s in self.shards:
            for k, v in s.split_counts.items():
                totals[k] = totals.get(k, 0) + v
        return totals

    def to_json(self) -> str:
        body = {
            "schema_version": self.schema_version,
            "count": self.count,
            "class_counts": self.class_counts(),
            "split_counts": self.split_counts(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "attrs": self.attrs,
            "shards": [asdict(s) for s in self.shards],
        }
        return json.dumps(body, indent=1)


def write_manifest(
    directory: Path, shards: list[ShardRecord], attrs: Mapping[str, Any]
) -> Manifest:
    """Write ``manifest.json`` last and atomically: from then on the set is complete and readable."""
    manifest = Manifest(shards=sorted(shards, key=lambda s: s.file), attrs=dict(attrs))
    atomic_write_text(directory / MANIFEST, manifest.to_json())
    return manifest


def read_manifest(directory: str | Path) -> Manifest:
    """Read a shard set's manifest; a missing or malformed one is a :class:`ShardError`."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not directory.is_dir():
        raise ShardError(f"shard set {directory} does not exist", "pass a folder written by synmed")
    if not path.is_file():
        partial = sorted(p.name for p in directory.glob("shard-*.h5*"))
        if partial:
            hint = f"it holds {len(partial)} shard file(s) but no manifest: an unfinished job; rerun it"
        elif (directory / MARKER).is_file():
            hint = "a synmed job stopped while writing it: an unfinished job; rerun it with --overwrite"
        else:
            hint = "pass a folder written by `synmed data ingest` or `synmed sample`"
        raise ShardError(f"{directory} is not a shard set: {MANIFEST} is missing", hint)
    try:
        body = json.loads(path.read_text())
        version = int(body["schema_version"])
        shards = [ShardRecord(**s) for s in body["shards"]]
        attrs = dict(body.get("attrs") or {})
    except (ValueError, KeyError, TypeError) as err:
        raise ShardError(f"{path} is malformed ({err})", "re-create the shard set") from None
    if version not in READABLE_VERSIONS:
        raise ShardError(
            f"{path} has schema version {version}; this synmed reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}",
            "re-create the shard set with this version, or use the synmed that wrote it",
        )
    return Manifest(shards=shards, attrs=attrs, schema_version=version)


def _names(value: Any) -> list[str]:
    """A class list attribute as stored (a JSON string) back as a list."""
    if value is None:
        return []
    if isinstance(value, bytes):
        value = value.decode()
    try:
        parsed = json.loads(value) if isinstance(value, str) else list(value)
    except ValueError:
        return [str(value)]
    return [str(v) for v in parsed] if isinstance(parsed, list) else [str(parsed)]


def open_shard(path: Path) -> h5py.File:
    """A shard file opened for reading; one that HDF5 cannot open is a :class:`ShardError`."""
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise ShardError(
            f"{path} is not a readable HDF5 file ({err})", "re-create the shard set"
        ) from None


def check_shard(path: Path, h5: h5py.File, record: ShardRecord, manifest: Manifest) -> None:
    """One shard's own attributes agree with the manifest's: schema, class list, label kind, count.

    Every reader calls this: a manifest edited, or copied from another set, would otherwise label
    each row by the wrong list.

    Raises:
        ShardError: naming the shard and both values.
    """
    version = h5.attrs.get("schema_version", -1)
    if int(version) not in READABLE_VERSIONS:
        raise ShardError(
            f"{path}: schema version {version}, expected one of {READABLE_VERSIONS}",
            "re-create the shard set with this synmed",
        )
    names, listed = _names(h5.attrs.get("class_names")), manifest.class_names
    if names != listed:
        raise ShardError(
            f"{path}: the shard's class names {names} differ from the manifest's {listed}",
            "the manifest was edited or belongs to another set: restore the set's own "
            "manifest.json or re-create the shard set",
        )
    kind = h5.attrs.get("label_kind", "none")
    kind = kind.decode() if isinstance(kind, bytes) else str(kind)
    if kind != manifest.attrs.get("label_kind", "none"):
        raise ShardError(
            f"{path}: the shard's label kind {kind!r} differs from the manifest's "
            f"{manifest.attrs.get('label_kind', 'none')!r}",
            "restore the set's own manifest.json or re-create the shard set",
        )
    if "images" not in h5:
        raise ShardError(f"{path}: dataset 'images' is missing", "re-create the shard")
    count, rows = int(h5.attrs.get("count", -1)), h5["images"].shape[0]
    if count != record.count or rows != record.count:
        raise ShardError(
            f"{path}: the shard says {count} rows and holds {rows} images, the manifest says "
            f"{record.count}",
            "re-create the shard set",
        )
