"""Class-folder ingest end to end, and the pipeline's handling of bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from suite.data.dataset import ShardDataset
from suite.data.ingest.options import IngestOptions
from suite.data.ingest.pipeline import ingest
from suite.data.verify import verify_shard_set
from suite.errors import DataError
from tests.unit.data.helpers import make_class_folders


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "suite", *args], capture_output=True, text=True, timeout=120
    )


def test_radiography_layout(tmp_path: Path) -> None:
    src = make_class_folders(tmp_path / "src", per_class=10)
    manifest = ingest(src, tmp_path / "out", IngestOptions(format="folder"), progress=False)
    assert manifest.count == 20 and manifest.class_names == ["COVID", "Normal"]
    verify_shard_set(tmp_path / "out")
    data = ShardDataset(tmp_path / "out")
    sources = data.read_column("source")
    assert all("/images/" in s for s in sources)  # masks/ skipped
    row = list(sources).index("Normal/images/Normal-3.png")
    assert data[row]["label"] == 1 and int(data[row]["image"][0, 0, 0]) == 43
    assert data[row]["image"].shape == (1, 24, 20)
    assert (tmp_path / "out" / "splits.json").is_file()


def test_splits_are_deterministic_and_ordered(tmp_path: Path) -> None:
    src = make_class_folders(tmp_path / "src", per_class=30)
    a = ingest(src, tmp_path / "a", IngestOptions(format="folder", seed=3), progress=False)
    b = ingest(src, tmp_path / "b", IngestOptions(format="folder", seed=3), progress=False)
    c = ingest(src, tmp_path / "c", IngestOptions(format="folder", seed=4), progress=False)
    col = [
        ShardDataset(d).read_column("source")
        for d in (tmp_path / "a", tmp_path / "b", tmp_path / "c")
    ]
    assert list(col[0]) == list(col[1]) and list(col[0]) != list(col[2])
    assert a.split_counts() == {"train": 48, "val": 6, "test": 6}
    assert a.split_counts() == b.split_counts() == c.split_counts()
    split = ShardDataset(tmp_path / "a").read_column("split")
    assert list(split) == sorted(
        split
    )  # rows stored train, val, test: one split reads contiguously


def test_resize_rgb_and_class_names(tmp_path: Path) -> None:
    src = make_class_folders(tmp_path / "src", per_class=2)
    opts = IngestOptions(
        format="folder", image_size=16, aspect="pad", channels=3, class_names=["Normal", "COVID"]
    )
    ingest(src, tmp_path / "out", opts, progress=False)
    data = ShardDataset(tmp_path / "out")
    assert data.class_names == ["Normal", "COVID"]
    assert data[0]["image"].shape == (3, 16, 16)
    labels = dict(zip(data.read_column("source"), data.labels))
    assert labels["COVID/images/COVID-0.png"] == 1


def test_mixed_sizes_need_image_size(tmp_path: Path) -> None:
    src = make_class_folders(tmp_path / "src", per_class=2)
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(src / "Normal" / "images" / "odd.png")
    with pytest.raises(DataError) as err:
        ingest(src, tmp_path / "out", IngestOptions(format="folder"), progress=False)
    assert "odd.png" in str(err.value) and "--image-size" in str(err.value)
    assert not (tmp_path / "out").exists()
    ingest(src, tmp_path / "out", IngestOptions(format="folder", image_size=20), progress=False)


def test_corrupt_png_names_the_file_and_leaves_nothing(tmp_path: Path) -> None:
    src = make_class_folders(tmp_path / "src", per_class=3)
    good = (src / "COVID" / "images" / "COVID-1.png").read_bytes()
    (src / "COVID" / "images" / "COVID-1.png").write_bytes(good[: len(good) // 2])
    out = tmp_path / "out"
    out.mkdir()  # an existing empty folder must stay empty
    proc = run_cli("data", "ingest", str(src), "--out", str(out), "--format", "folder", "--quiet")
    assert proc.returncode == 2
    assert "COVID-1.png" in proc.stderr and "corrupt or truncated" in proc.stderr
    assert proc.stderr.count("\n") <= 3 and "Traceback" not in proc.stderr
    assert list(out.iterdir()) == []
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_not_an_image(tmp_path: Path) -> None:
    src = make_class_folders(tmp_path / "src", per_class=1)
    (src / "Normal" / "images" / "notes.jpg").write_text("not a jpeg")
    with pytest.raises(DataError, match="notes.jpg is not a readable image"):
        ingest(src, tmp_path / "out", IngestOptions(format="folder"), progress=False)


def test_empty_folders(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class subfolders"):
        ingest(tmp_path / "empty", tmp_path / "out", IngestOptions(format="folder"), progress=False)
    (tmp_path / "empty" / "COVID").mkdir()
    with pytest.raises(DataError, match="hold no image files"):
        ingest(tmp_path / "empty", tmp_path / "out", IngestOptions(format="folder"), progress=False)
    assert not (tmp_path / "out").exists()


def test_class_folder_outside_the_class_list(tmp_path: Path) -> None:
    src = make_class_folders(tmp_path / "src", per_class=1, classes=("COVID", "Normal", "Viral"))
    with pytest.raises(DataError, match="Viral are not in the class list"):
        ingest(
            src,
            tmp_path / "out",
            IngestOptions(format="folder", class_names=["COVID", "Normal"]),
            progress=False,
        )


def test_missing_source_and_unknown_format(tmp_path: Path) -> None:
    proc = run_cli("data", "ingest", str(tmp_path / "nope"), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    proc = run_cli(
        "data", "ingest", str(tmp_path), "--out", str(tmp_path / "out"), "--format", "jpeg2"
    )
    assert proc.returncode == 2 and "data.format" in proc.stderr and "'folder'" in proc.stderr


def test_cli_ingest_info_verify(tmp_path: Path) -> None:
    src = make_class_folders(tmp_path / "src", per_class=5)
    proc = run_cli(
        "data",
        "ingest",
        str(src),
        "--out",
        str(tmp_path / "out"),
        "--format",
        "folder",
        "--image-size",
        "16",
        "--split-fractions",
        "0.6,0.2,0.2",
        "--quiet",
    )
    assert proc.returncode == 0, proc.stderr
    assert "COVID   5" in proc.stdout
    info = run_cli("data", "info", str(tmp_path / "out"), "--json")
    assert '"count": 10' in info.stdout
    assert run_cli("data", "verify", str(tmp_path / "out")).returncode == 0


def _refused(src: Path, out: Path, match: str, **options: object) -> DataError:
    with pytest.raises(DataError, match=match) as err:
        ingest(src, out, IngestOptions(format="folder", **options), progress=False)
    assert not out.exists() and not list(out.parent.glob(f".{out.name}.staging-*"))
    return err.value


@pytest.mark.parametrize("target", ["source", "parent"])
def test_a_class_folder_linking_back_up_is_refused(tmp_path: Path, target: str) -> None:
    src = make_class_folders(tmp_path / "data" / "src")
    (src / "Fake").symlink_to(src if target == "source" else src.parent, target_is_directory=True)
    err = _refused(
        src,
        tmp_path / "out",
        r"class folder .*Fake is a symlink to .*, the source or a folder above",
    )
    assert "replace the link with a real folder" in (err.fix or "")


def test_a_class_folder_link_loop_is_refused(tmp_path: Path) -> None:
    src = make_class_folders(tmp_path / "src")
    (src / "Loop").symlink_to(src / "Loop2")
    (src / "Loop2").symlink_to(src / "Loop")
    _refused(src, tmp_path / "out", r"class folder .*Loop2? is a symlink loop")


def test_class_folder_links_outside_or_onto_another_class_are_refused(tmp_path: Path) -> None:
    src = make_class_folders(tmp_path / "src")
    elsewhere = make_class_folders(tmp_path / "other", classes=("Lung",))
    (src / "Lung").symlink_to(elsewhere / "Lung")
    err = _refused(src, tmp_path / "out", r"Lung is a symlink to .*, outside the source")
    assert "point --source at the folder holding the real data" in (err.fix or "")
    (src / "Lung").unlink()
    (src / "Twin").symlink_to(src / "Normal" / "images")
    _refused(src, tmp_path / "out", r"Twin is a symlink into the class folder Normal")
    (src / "Twin").unlink()
    (src / ".store").mkdir()  # a link into a hidden store inside the source is a real class
    (src / "Normal").rename(src / ".store" / "Normal")
    (src / "Normal").symlink_to(src / ".store" / "Normal")
    assert ingest(src, tmp_path / "out", IngestOptions(format="folder"), progress=False).count == 8


@pytest.mark.parametrize("name", ["../other", ".hidden", "a/b"])
def test_a_path_like_class_name_is_refused_by_name(tmp_path: Path, name: str) -> None:
    src = make_class_folders(tmp_path / "data" / "src")
    make_class_folders(tmp_path / "data" / "other")  # what "../other" would read
    err = _refused(
        src, tmp_path / "out", "is not a plain name", class_names=["COVID", "Normal", name]
    )
    assert repr(name) in err.what and "--class-names" in err.what
