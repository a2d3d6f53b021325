"""Staged output: a failed writer leaves the destination exactly as it was."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from suite.data.shards import read_manifest
from suite.data.writer import ShardSetWriter, staged_output
from suite.errors import ShardError


def test_error_leaves_no_output(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(RuntimeError), staged_output(out) as staging:
        (staging / "shard-00000.h5").write_text("half")
        raise RuntimeError("reader failed")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no staging folder left behind either


def test_empty_existing_folder_stays_empty_on_error(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(RuntimeError), staged_output(out):
        raise RuntimeError("boom")
    assert out.is_dir() and not any(out.iterdir())


def test_success_moves_everything(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with staged_output(out) as staging:
        writer = ShardSetWriter(staging, {"class_names": []}, shard_size=2)
        for i in range(5):
            writer.add({"images": np.zeros((1, 2, 2), np.uint8), "index": i})
        writer.close()
    assert read_manifest(out).count == 5
    assert sorted(p.name for p in out.iterdir())[-1] == "shard-00002.h5"


def test_refuses_non_empty_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("x")
    with pytest.raises(ShardError, match="not empty"), staged_output(out):
        pass
    with staged_output(out, overwrite=True) as staging:
        (staging / "new.txt").write_text("y")
    assert [p.name for p in out.iterdir()] == ["new.txt"]


def test_rows_must_share_keys(tmp_path: Path) -> None:
    writer = ShardSetWriter(tmp_path, {})
    writer.add({"images": np.zeros((1, 2, 2), np.uint8), "index": 0})
    with pytest.raises(ValueError, match="differ"):
        writer.add({"images": np.zeros((1, 2, 2), np.uint8), "index": 1, "labels": 0})
