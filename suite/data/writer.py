"""Writing a whole shard set: buffered rows into numbered shards, then the manifest, all staged.

:func:`staged_output` makes a multi-file write all-or-nothing: everything goes into a hidden
staging folder beside the destination and is moved in only when the writer finished without error,
manifest last. On an error the destination is left exactly as it was.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

import suite
from suite.artifacts.files import OutOfSpace, atomic_write_text, fsync_dir, out_of_space, space_fix
from suite.data.shards import MANIFEST, MARKER, Manifest, ShardRecord, write_manifest, write_shard
from suite.errors import DataError, ShardError

STAGING = ".staging-"


def staging_name(out: Path, host: str | None = None, pid: int | None = None) -> str:
    """``.{out.name}.staging-{host}-{pid}``: the host and pid tell a dead writer's folder apart."""
    host = host if host is not None else socket.gethostname()
    return f".{out.name}{STAGING}{host}-{pid if pid is not None else os.getpid()}"


@contextlib.contextmanager
def staged_output(
    out: Path,
    *,
    overwrite: bool = False,
    inputs: Iterable[Path | str | None] = (),
    writer: str | None = None,
) -> Iterator[Path]:
    """Yield a staging folder; on success its files replace ``out``'s, on error it is deleted.

    ``out`` must not exist, or be empty, or ``overwrite`` must be set and ``out`` be a folder synmed
    wrote (it holds the marker file every staged output gets, or a manifest.json); its old files are
    removed only after the new output is complete. ``out`` may not be one of ``inputs``, lie inside
    one, or contain one. A full disk, file-size limit or quota inside the block becomes one
    :class:`~suite.artifacts.files.OutOfSpace` naming the file (or the staging folder).

    Args:
        out: The folder to create or replace.
        overwrite: Replace an existing synmed output.
        inputs: What the writer reads (None entries are skipped); symlinks are resolved.
        writer: Recorded in the marker; defaults to the calling module.
    """
    out = Path(out)
    check_outside_inputs(out, inputs)
    if out.exists() and not out.is_dir():
        raise ShardError(f"output {out} exists and is not a folder", "choose another --out")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise ShardError(
                f"output folder {out} is not empty",
                "choose a new --out, remove the folder, or pass --overwrite",
            )
        if not ((out / MARKER).is_file() or (out / MANIFEST).is_file()):
            raise ShardError(
                f"output folder {out} is not empty and was not written by synmed (it has neither "
                f"{MARKER} nor {MANIFEST}): --overwrite replaces only synmed's own outputs",
                f"choose another --out, or remove {out} yourself if nothing in it is needed",
            )
    name = writer or sys._getframe(2).f_globals.get("__name__", "synmed")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(out)
        staging = out.parent / staging_name(out)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
    except OSError as err:
        raise _write_failed(err, out, out.parent) from err
    try:
        yield staging
        marker = json.dumps(
            {
                "writer": name,
                "synmed_version": suite.__version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        )
        atomic_write_text(staging / MARKER, marker + "\n")
        _swap_in(staging, out, marker)
    except BaseException as err:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(err, Exception) and out_of_space(err) is not None:
            raise _write_failed(err, out, staging) from err
        raise


def _write_failed(err: BaseException, out: Path, where: Path) -> DataError:
    code = out_of_space(err)
    if code is None:
        assert isinstance(err, OSError)
        return DataError(
            f"cannot write {where}: {err.strerror or err}",
            f"check that {out.parent} is writable, or pass another --out",
        )
    path = (
        err.path if isinstance(err, OutOfSpace) else Path(getattr(err, "filename", None) or where)
    )
    return OutOfSpace(path, code, space_fix(code, out, "pass another --out"))


def _swap_in(staging: Path, out: Path, marker: str) -> None:
    """Move the finished staging folder's files into ``out``, so a kill at any moment leaves the
    old set whole, or a folder without manifest (an unfinished job that a rerun with --overwrite
    completes), or the new set whole: never a manifest listing files already deleted."""
    if not out.is_dir():
        os.replace(staging, out)
        fsync_dir(out.parent)
        return
    if not any(out.iterdir()):
        out.rmdir()
        os.replace(staging, out)
        fsync_dir(out.parent)
        return
    # the marker first: once the old manifest is gone it is what lets a rerun's --overwrite in
    atomic_write_text(out / MARKER, marker + "\n")
    if (out / MANIFEST).exists():
        (out / MANIFEST).unlink()
        fsync_dir(out)
    for old in out.iterdir():
        if old.name != MARKER:
            shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()
    for f in sorted(staging.iterdir(), key=lambda p: p.name == MANIFEST):  # manifest last
        os.replace(f, out / f.name)
    fsync_dir(out)
    staging.rmdir()


def check_outside_inputs(out: Path, inputs: Iterable[Path | str | None]) -> None:
    """``out`` may not be an input, lie inside one or contain one (symlinks resolved)."""
    target = out.resolve()
    for given in inputs:
        if given is None:
            continue
        source = Path(given).resolve()
        if target == source or source in target.parents:
            how = "is" if target == source else "lies inside"
            raise ShardError(
                f"output {out} {how} the input {given}: writing it would modify the input",
                "pass an --out outside every input",
            )
        if target in source.parents:
            raise ShardError(
                f"output {out} contains the input {given}: --overwrite would delete it",
                "pass an --out that neither is nor holds an input",
            )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_stale_staging(out: Path) -> list[Path]:
    """Delete staging folders of ``out`` left by dead writers on this host; returns them.

    A killed writer never removes its own: without this each kill would leave one more hidden folder
    beside ``out``. Other hosts' folders are kept (their pids mean nothing here).
    """
    host = socket.gethostname()
    removed = []
    prefix = f".{out.name}{STAGING}{host}-"
    for folder in out.parent.glob(f".{glob.escape(out.name)}{STAGING}*"):
        pid = folder.name[len(prefix) :] if folder.name.startswith(prefix) else ""
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


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
