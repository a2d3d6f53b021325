"""Shard files and manifests: format, atomic writes, schema."""

from __future__ import annotations

import contextlib
import errno
import json
import resource
import signal
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest

from suite.artifacts.digests import sha256_file
from suite.artifacts.files import OutOfSpace, atomic_write_text
from suite.data.shards import MANIFEST, SCHEMA_VERSION, read_manifest, write_manifest, write_shard
from suite.errors import ShardError
from tests.unit.data.helpers import make_shard_set, pattern


def test_write_shard_layout(tmp_path: Path) -> None:
    images = np.stack([pattern(i) for i in range(5)])
    rec = write_shard(
        tmp_path,
        3,
        {"images": images, "index": np.arange(10, 15), "labels": np.array([0, 1, 1, 0, 1])},
        {"class_names": ["x", "y"], "source": "real"},
    )
    path = tmp_path / "shard-00003.h5"
    assert rec.file == path.name and rec.count == 5 and rec.sha256 == sha256_file(path)
    assert (rec.index_min, rec.index_max) == (10, 14)
    assert rec.class_counts == [2, 3]
    assert not list(tmp_path.glob("*.tmp"))
    with h5py.File(path) as h5:
        assert h5.attrs["schema_version"] == SCHEMA_VERSION
        assert h5["images"].chunks == (1, 1, 16, 16)  # one image per chunk: random access reads one
        assert h5["images"].compression == "lzf"
        np.testing.assert_array_equal(h5["images"][:], images)
        assert json.loads(h5.attrs["class_names"]) == ["x", "y"]


def test_write_shard_rejects_bad_arrays(tmp_path: Path) -> None:
    images = np.zeros((2, 1, 4, 4), np.uint8)
    with pytest.raises(ValueError, match="index"):
        write_shard(tmp_path, 0, {"images": images}, {})
    with pytest.raises(ValueError, match="must be uint8"):
        write_shard(tmp_path, 0, {"images": images.astype(np.float32), "index": np.arange(2)}, {})
    with pytest.raises(ValueError, match="rows"):
        write_shard(tmp_path, 0, {"images": images, "index": np.arange(3)}, {})
    with pytest.raises(ValueError, match="unknown shard dataset"):
        write_shard(
            tmp_path, 0, {"images": images, "index": np.arange(2), "extra": np.arange(2)}, {}
        )
    assert not list(tmp_path.iterdir())


def test_manifest_totals_and_round_trip(tmp_path: Path) -> None:
    make_shard_set(tmp_path, n=10, shard_size=4)
    manifest = read_manifest(tmp_path)
    assert [s.count for s in manifest.shards] == [4, 4, 2]
    assert manifest.count == 10
    assert manifest.class_counts() == [4, 3, 3]
    assert manifest.split_counts() == {"train": 4, "val": 3, "test": 3}
    body = json.loads((tmp_path / MANIFEST).read_text())
    assert body["count"] == 10 and body["schema_version"] == SCHEMA_VERSION


def test_missing_or_partial_set_is_explained(tmp_path: Path) -> None:
    with pytest.raises(ShardError, match="does not exist"):
        read_manifest(tmp_path / "nope")
    with pytest.raises(ShardError, match="manifest.json is missing"):
        read_manifest(tmp_path)
    write_shard(
        tmp_path, 0, {"images": np.zeros((1, 1, 2, 2), np.uint8), "index": np.arange(1)}, {}
    )
    with pytest.raises(ShardError, match="unfinished job"):
        read_manifest(tmp_path)


def test_schema_version_mismatch(tmp_path: Path) -> None:
    make_shard_set(tmp_path)
    body = json.loads((tmp_path / MANIFEST).read_text())
    body["schema_version"] = 99
    (tmp_path / MANIFEST).write_text(json.dumps(body))
    with pytest.raises(ShardError, match="schema version 99"):
        read_manifest(tmp_path)


def test_manifest_write_is_atomic(tmp_path: Path) -> None:
    write_manifest(tmp_path, [], {"a": 1})
    assert (tmp_path / MANIFEST).exists() and not (tmp_path / (MANIFEST + ".tmp")).exists()


@contextlib.contextmanager
def file_size_limit(nbytes: int) -> Iterator[None]:
    """RLIMIT_FSIZE lowered for the block, SIGXFSZ ignored (as the CLI does): writes fail EFBIG."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def test_a_failed_shard_write_names_the_file_and_leaves_no_tmp(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {
        "images": rng.integers(0, 256, (8, 1, 64, 64), dtype=np.uint8),
        "index": np.arange(8, dtype=np.int64),
    }
    with file_size_limit(16 << 10), pytest.raises(OutOfSpace) as err:
        write_shard(tmp_path, 3, arrays, {"class_names": []})
    assert err.value.what.startswith(
        f"writing {tmp_path / 'shard-00003.h5'} failed: file too large"
    )
    assert err.value.code == errno.EFBIG and "ulimit -f" in (err.value.fix or "")
    with file_size_limit(16 << 10), pytest.raises(OutOfSpace, match=r"notes.json failed"):
        atomic_write_text(tmp_path / "notes.json", "x" * (32 << 10))
    assert list(tmp_path.iterdir()) == []
