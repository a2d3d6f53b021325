"""`synmed data merge`: several shard sets -> one, with a fresh contiguous index and a joint class list."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
from tqdm import tqdm

import suite
from suite.artifacts.digests import sha256_file
from suite.data.shards import MANIFEST, STRING_DATASETS, read_manifest
from suite.data.verify import verify_shard_set
from suite.data.writer import ShardSetWriter, staged_output
from suite.errors import ShardError

ROW_KEYS = ("images", "masks", "labels", "split", "source", "group", "cluster", "features")


def merge_shard_sets(
    inputs: list[Path],
    out: Path,
    *,
    shard_size: int = 2048,
    compression: str = "lzf",
    overwrite: bool = False,
) -> int:
    """Merge ``inputs`` into ``out``; returns the number of rows.

    All inputs must share image shape, label kind and whether they carry masks. Class lists are
    joined by name in order of first appearance, and labels are remapped to it. Rows get a new
    global index 0..N-1; ``merged_from`` in the attributes records each input's manifest digest.
    """
    if len(inputs) < 2:
        raise ShardError("merge needs at least two shard sets", "pass two or more input folders")
    _refuse_duplicates(inputs)
    manifests = []
    shapes = []
    for path in inputs:
        report = verify_shard_set(path)
        manifests.append(read_manifest(path))
        shapes.append(report.image_shape)
    for path, shape in zip(inputs[1:], shapes[1:]):
        if shape != shapes[0]:
            raise ShardError(
                f"{path} holds images of shape {shape}, {inputs[0]} holds {shapes[0]}: mismatched image sizes",
                "re-ingest one of them with --image-size and --channels that match the other",
            )
    kinds = {m.attrs.get("label_kind", "none") for m in manifests}
    if len(kinds) > 1:
        raise ShardError(
            f"cannot merge label kinds {sorted(kinds)}", "merge sets labelled the same way"
        )
    classes: list[str] = []
    for m in manifests:
        classes += [c for c in m.class_names if c not in classes]
    kind = kinds.pop()
    sources = sorted({m.attrs.get("source", "real") for m in manifests})
    attrs: dict[str, Any] = {
        "source": sources[0] if len(sources) == 1 else "mixed",
        "class_names": classes,
        "label_kind": kind,
        "mask_names": manifests[0].attrs.get("mask_names", []),
        "merged_from": [
            {
                "path": str(Path(p).resolve()),
                "count": m.count,
                "manifest_sha256": sha256_file(Path(p) / MANIFEST),
            }
            for p, m in zip(inputs, manifests)
        ],
        "synmed_version": suite.__version__,
    }
    total = sum(m.count for m in manifests)
    index = 0
    with staged_output(out, overwrite=overwrite, inputs=inputs) as staging:
        writer = ShardSetWriter(staging, attrs, shard_size=shard_size, compression=compression)
        bar = tqdm(total=total, desc="merge", unit="img")
        keys: set[str] | None = None
        for path, m in zip(inputs, manifests):
            remap = np.array([classes.index(c) for c in m.class_names], dtype=np.int64)
            for rec in m.shards:
                with h5py.File(Path(path) / rec.file, "r") as h5:
                    here = {k for k in ROW_KEYS if k in h5}
                    keys = here if keys is None else keys
                    if here != keys:
                        raise ShardError(
                            f"{path}/{rec.file} has columns {sorted(here)}, earlier inputs {sorted(keys)}",
                            "merge sets written by the same stage (all with masks, or none)",
                        )
                    # text columns come back as bytes unless read as str
                    columns = {
                        k: h5[k].asstr()[:] if k in STRING_DATASETS else h5[k][:] for k in here
                    }
                for r in range(rec.count):
                    row = {k: v[r] for k, v in columns.items()}
                    if "labels" in row:
                        row["labels"] = _remap(row["labels"], remap, len(classes), kind)
                    row["index"] = index
                    writer.add(row)
                    index += 1
                    bar.update(1)
        bar.close()
        writer.close()
    return index


def _refuse_duplicates(inputs: list[Path]) -> None:
    """The same set twice (by path, or a copy with the same manifest) would double its rows."""
    by_path: dict[Path, Path] = {}
    by_digest: dict[str, Path] = {}
    for path in inputs:
        resolved = Path(path).resolve()
        if resolved in by_path:
            raise ShardError(
                f"{path} is given twice (also as {by_path[resolved]}): its rows would be merged twice",
                "list each set once",
            )
        by_path[resolved] = Path(path)
        read_manifest(path)  # a clear error for a folder that is not a set
        digest = sha256_file(Path(path) / MANIFEST)
        if digest in by_digest:
            raise ShardError(
                f"{path} and {by_digest[digest]} are the same shard set (identical manifests): "
                "its rows would be merged twice",
                "list each set once",
            )
        by_digest[digest] = Path(path)


def _remap(label: np.ndarray, remap: np.ndarray, k: int, kind: str) -> np.ndarray:
    if kind == "multilabel":
        out = np.zeros(k, dtype=np.uint8)
        out[remap] = label
        return out
    return remap[int(label)]
