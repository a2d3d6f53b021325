"""`synmed data verify` finds each kind of damage and names it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from suite.artifacts.digests import sha256_file
from suite.cli import main
from suite.data.dataset import ShardDataset
from suite.data.shards import MANIFEST
from suite.data.verify import verify_shard_set
from suite.errors import ShardError
from tests.unit.data.helpers import make_shard_set


def rewrite_manifest(directory: Path, edit) -> None:
    body = json.loads((directory / MANIFEST).read_text())
    edit(body)
    (directory / MANIFEST).write_text(json.dumps(body))


def test_good_set_passes(tmp_path: Path, capsys) -> None:
    make_shard_set(tmp_path, n=9, masks=True)
    report = verify_shard_set(tmp_path)
    assert (report.count, report.shards, report.image_shape) == (9, 3, (1, 16, 16))
    assert main(["data", "verify", str(tmp_path)]) == 0
    assert "ok" in capsys.readouterr().out


def test_truncated_shard(tmp_path: Path, capsys) -> None:
    make_shard_set(tmp_path, n=9)
    path = tmp_path / "shard-00001.h5"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ShardError, match="shard-00001.h5: sha256 differs"):
        verify_shard_set(tmp_path)
    assert main(["data", "verify", str(tmp_path)]) == 2
    assert "shard-00001.h5" in capsys.readouterr().err
    with pytest.raises(ShardError, match="not a readable HDF5"):
        verify_shard_set(tmp_path, digests=False)


def test_count_mismatch(tmp_path: Path) -> None:
    make_shard_set(tmp_path, n=9)
    rewrite_manifest(tmp_path, lambda b: b["shards"][0].update(count=5))
    with pytest.raises(ShardError, match="holds 4 images, the manifest says 5"):
        verify_shard_set(tmp_path)


def test_missing_shard(tmp_path: Path) -> None:
    make_shard_set(tmp_path, n=9)
    (tmp_path / "shard-00002.h5").unlink()
    with pytest.raises(ShardError, match="shard-00002.h5 is listed in the manifest but missing"):
        verify_shard_set(tmp_path)


def _patch_shard(directory: Path, name: str, edit) -> None:
    """Edit a shard in place and re-record its digest, so only the semantic check can catch it."""
    path = directory / name
    with h5py.File(path, "r+") as h5:
        edit(h5)
    digest = sha256_file(path)
    rewrite_manifest(
        directory, lambda b: [s.update(sha256=digest) for s in b["shards"] if s["file"] == name]
    )


def test_duplicate_index(tmp_path: Path) -> None:
    make_shard_set(tmp_path, n=8)

    def dup(h5):
        h5["index"][...] = np.array([0, 1, 2, 3])

    _patch_shard(tmp_path, "shard-00001.h5", dup)
    rewrite_manifest(tmp_path, lambda b: b["shards"][1].update(index_min=0, index_max=3))
    with pytest.raises(ShardError, match="global index 0 appears more than once"):
        verify_shard_set(tmp_path)


def test_label_out_of_range(tmp_path: Path) -> None:
    make_shard_set(tmp_path, n=8)

    def bad(h5):
        h5["labels"][0] = 7

    _patch_shard(tmp_path, "shard-00000.h5", bad)
    with pytest.raises(ShardError, match="label 7 is outside the 3 classes"):
        verify_shard_set(tmp_path)


def test_schema_version_in_file(tmp_path: Path) -> None:
    make_shard_set(tmp_path, n=4)

    def old(h5):
        h5.attrs["schema_version"] = 0

    _patch_shard(tmp_path, "shard-00000.h5", old)
    with pytest.raises(ShardError, match="schema version 0"):
        verify_shard_set(tmp_path)


def test_stray_files_are_warned_not_fatal(tmp_path: Path) -> None:
    make_shard_set(tmp_path, n=4)
    shutil.copy(tmp_path / "shard-00000.h5", tmp_path / "shard-00009.h5.tmp")
    report = verify_shard_set(tmp_path)
    assert report.warnings and "shard-00009.h5.tmp" in report.warnings[0]


def test_manifest_class_names_that_disagree_with_the_shards_fail_verify_and_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = make_shard_set(tmp_path / "s", n=6)
    rewrite_manifest(d, lambda m: m["attrs"].update(class_names=["c", "b", "a"]))
    expected = (
        r"shard-00000.h5: the shard's class names \['a', 'b', 'c'\] differ from the manifest's "
        r"\['c', 'b', 'a'\]"
    )
    with pytest.raises(ShardError, match=expected):
        verify_shard_set(d, digests=False)
    for verify in ("sha256", "none"):  # every reader, whatever digest check it asked for
        with pytest.raises(ShardError, match=expected):
            ShardDataset(d, verify=verify)
    assert main(["data", "verify", str(d)]) == 2
    assert "differ from the manifest's" in capsys.readouterr().err


def test_a_shard_count_attribute_that_disagrees_fails(tmp_path: Path) -> None:
    d = make_shard_set(tmp_path / "s", n=6)
    with h5py.File(d / "shard-00001.h5", "r+") as h5:
        h5.attrs["count"] = 3
    with pytest.raises(ShardError, match=r"shard-00001.h5: the shard says 3 rows and holds 2"):
        ShardDataset(d, verify="none")
    rewrite_manifest(d, lambda m: m["attrs"].update(label_kind="multilabel"))
    with pytest.raises(ShardError, match=r"label kind 'multiclass' differs from the manifest's"):
        verify_shard_set(d, digests=False)
