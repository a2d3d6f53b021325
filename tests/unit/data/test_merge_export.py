"""`synmed data merge` and `synmed data export`."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from suite.cli import main
from suite.data.dataset import ShardDataset
from suite.data.export import export_folder
from suite.data.merge import merge_shard_sets
from suite.data.verify import verify_shard_set
from suite.errors import ShardError
from tests.unit.data.helpers import make_shard_set, pattern


def test_merge_joins_classes_and_reindexes(tmp_path: Path) -> None:
    a = make_shard_set(tmp_path / "a", n=6, classes=("x", "y"))
    b = make_shard_set(tmp_path / "b", n=5, classes=("y", "z"), source="synthetic")
    n = merge_shard_sets([a, b], tmp_path / "m", shard_size=4)
    assert n == 11
    verify_shard_set(tmp_path / "m")
    data = ShardDataset(tmp_path / "m")
    assert data.class_names == ["x", "y", "z"]
    assert list(data.indices) == list(range(11))
    assert [data[i]["label"] for i in range(6, 11)] == [1, 2, 1, 2, 1]  # b's y,z remapped
    np.testing.assert_array_equal(data[7]["image"].numpy(), pattern(1))
    assert data.manifest.attrs["source"] == "mixed"
    assert len(data.manifest.attrs["merged_from"]) == 2


def test_merge_refuses_mismatched_sizes(tmp_path: Path) -> None:
    a = make_shard_set(tmp_path / "a", n=3, size=16)
    b = make_shard_set(tmp_path / "b", n=3, size=8)
    with pytest.raises(ShardError, match="mismatched image sizes"):
        merge_shard_sets([a, b], tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_export_folder(tmp_path: Path) -> None:
    make_shard_set(tmp_path / "s", n=6, masks=True)
    assert (
        main(
            [
                "data",
                "export",
                str(tmp_path / "s"),
                "--to",
                str(tmp_path / "png"),
                "--split",
                "train",
            ]
        )
        == 0
    )
    with open(tmp_path / "png" / "labels.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["index"] for r in rows] == ["0", "3"]
    assert [r["label"] for r in rows] == ["a", "a"] and rows[1]["split"] == "train"
    image = np.asarray(Image.open(tmp_path / "png" / rows[1]["file"]))
    np.testing.assert_array_equal(image, pattern(3)[0])
    assert (tmp_path / "png" / rows[1]["mask"]).is_file()


def test_export_refuses_non_empty_target(tmp_path: Path, capsys) -> None:
    make_shard_set(tmp_path / "s", n=2)
    (tmp_path / "png").mkdir()
    (tmp_path / "png" / "keep.txt").write_text("mine")
    assert main(["data", "export", str(tmp_path / "s"), "--to", str(tmp_path / "png")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "png").iterdir()] == ["keep.txt"]


def test_merge_keeps_text_columns(tmp_path: Path) -> None:
    a = make_shard_set(tmp_path / "a", n=3)
    b = make_shard_set(tmp_path / "b", n=2)
    merge_shard_sets([a, b], tmp_path / "m")
    assert list(ShardDataset(tmp_path / "m").read_column("source")) == [
        "img0.png", "img1.png", "img2.png", "img0.png", "img1.png"
    ]  # fmt: skip


def test_merge_refuses_a_set_listed_twice(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a = make_shard_set(tmp_path / "a", n=4)
    (tmp_path / "alias").symlink_to(a)
    shutil.copytree(a, tmp_path / "copy")  # same manifest digest: the same set
    b = make_shard_set(tmp_path / "b", n=3)
    for twice, match in (
        ([a, b, a], r"a is given twice \(also as .*a\)"),
        ([a, tmp_path / "alias"], r"alias is given twice"),
        ([a, tmp_path / "copy"], r"copy and .*a are the same shard set"),
    ):
        with pytest.raises(ShardError, match=match) as err:
            merge_shard_sets(twice, tmp_path / "m")
        assert err.value.fix == "list each set once"
        assert not (tmp_path / "m").exists()
    assert main(["data", "merge", str(a), str(a), "--out", str(tmp_path / "m")]) == 2
    assert "given twice" in capsys.readouterr().err


def test_merge_and_export_may_not_write_into_their_inputs(tmp_path: Path) -> None:
    a = make_shard_set(tmp_path / "a", n=4)
    b = make_shard_set(tmp_path / "b", n=3)
    before = sorted(p.name for p in a.iterdir())
    with pytest.raises(ShardError, match=r"output .*a is the input"):
        merge_shard_sets([a, b], a, overwrite=True)
    with pytest.raises(ShardError, match=r"output .*exported lies inside the input"):
        export_folder(a, a / "exported", overwrite=True)
    assert sorted(p.name for p in a.iterdir()) == before
    verify_shard_set(a)


def test_export_reads_through_the_digests(tmp_path: Path) -> None:
    a = make_shard_set(tmp_path / "a", n=4)
    with open(a / "shard-00000.h5", "r+b") as f:  # one byte changed after the set was written
        f.seek(-1, 2)
        f.write(b"\x01" if f.read(1) != b"\x01" else b"\x02")
    with pytest.raises(ShardError, match="shard-00000.h5: sha256 does not match"):
        export_folder(a, tmp_path / "png")
    assert not (tmp_path / "png").exists()
