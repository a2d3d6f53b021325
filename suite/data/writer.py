"""Writing a whole shard set: buffered rows into numbered shards, then the manifest, all staged.

:func:`staged_output` makes a multi-file write all-or-nothing: everything goes into a hidden
staging folder beside the destination and is moved in only when the writer finished without error,
manifest last. On an error the destination is left exactly as it was.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from suite.data.shards import MANIFEST, Manifest, ShardRecord, write_manifest, write_shard
from suite.errors import ShardError


@contextlib.contextmanager
def staged_output(out: Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a staging folder; on success its files replace ``out``'s, on error it is deleted.

    ``out`` must not exist, or be empty, or ``overwrite`` must be set (its old files are removed only
    after the new set is complete).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ShardError(f"output {out} exists and is not a folder", "choose another --out")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ShardError(
            f"output folder {out} is not empty",
            "choose a new --out, remove the folder, or pass --overwrite",
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out.is_dir():
        for old in out.iterdir():  # only reached with overwrite=True or an empty folder
            shutil.rmtree(old) if old.is_dir() else old.unlink()
        files = sorted(staging.iterdir(), key=lambda p: p.name == MANIFEST)  # manifest last
        for f in files:
            os.replace(f, out / f.name)
        staging.rmdir()
    else:
        os.replace(staging, out)


class ShardSetWriter:
    """Buffers rows and writes them as shards of ``shard_size`` rows; :meth:`close` writes the manifest.

    Args:
        directory: An existing, empty folder (usually from :func:`staged_output`).
        attrs: Set-level attributes stored in every shard and in the manifest (class names,
            label kind, source, provenance).
        shard_size: Rows per shard.
        compression: Image and mask compression ("lzf", "gzip" or "none").
    """

    def __init__(
        self,
        directory: Path,
        attrs: Mapping[str, Any],
        *,
        shard_size: int = 2048,
        compression: str = "lzf",
    ) -> None:
        if shard_size < 1:
            raise ValueError("shard_size must be at least 1")
        self.directory = Path(directory)
        self.attrs = dict(attrs)
        self.shard_size = shard_size
        self.compression = compression
        self.records: list[ShardRecord] = []
        self._rows: dict[str, list[np.ndarray]] = {}
        self._count = 0

    def add(self, row: Mapping[str, np.ndarray | int]) -> None:
        """Add one row: ``images`` (C, H, W) uint8 and ``index`` at least; same keys every row."""
        if self._rows and set(row) != set(self._rows):
            raise ValueError(
                f"row keys {sorted(row)} differ from earlier rows {sorted(self._rows)}"
            )
        for key, value in row.items():
            self._rows.setdefault(key, []).append(np.asarray(value))
        self._count += 1
        if len(self._rows["images"]) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        if not self._rows or not self._rows["images"]:
            return
        arrays = {key: _stack(key, values) for key, values in self._rows.items()}
        self.records.append(
            write_shard(
                self.directory, len(self.records), arrays, self.attrs, compression=self.compression
            )
        )
        self._rows = {}

    def close(self) -> Manifest:
        self.flush()
        return write_manifest(self.directory, self.records, self.attrs)

    def __len__(self) -> int:
        return self._count


_DTYPES = {"index": np.int64, "split": np.uint8, "cluster": np.int32, "features": np.float32}


def _stack(key: str, values: list[np.ndarray]) -> np.ndarray:
    if key in ("source", "group"):
        return np.array([str(v) for v in values], dtype=object)
    if key == "labels":
        arr = np.stack(values)
        return arr.astype(np.uint8 if arr.ndim == 2 else np.int64)
    arr = np.stack(values)
    return arr.astype(_DTYPES[key]) if key in _DTYPES else arr
