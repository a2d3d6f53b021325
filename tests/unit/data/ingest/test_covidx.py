"""COVIDx CXR: a small copy of the Kaggle layout (train/val/test .txt files and image folders)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from suite.data.dataset import ShardDataset
from suite.data.ingest.adapters import resolve_adapter
from suite.data.ingest.covidx import COVIDxAdapter
from suite.data.ingest.nih import NIHAdapter
from suite.data.ingest.options import IngestOptions
from suite.data.ingest.pipeline import ingest
from suite.data.verify import verify_shard_set
from suite.errors import DataError

SYNMED = Path(sys.executable).parent / "synmed"
# split -> patients; each patient has two images, labels alternate negative/positive by patient
PATIENTS = {
    "train": [f"p{i}" for i in range(12)],
    "val": ["v0", "v1"],
    "test": ["t0", "t1", "t2"],
}


def value(patient: str, k: int) -> int:
    return (sum(map(ord, patient)) * 7 + k * 50) % 256


def label_of(patient: str) -> str:
    return "positive" if int(patient[1:]) % 2 else "negative"


def make_covidx(root: Path, splits: tuple[str, ...] = ("train", "val", "test")) -> Path:
    """Lines ``patient filename label source`` as in the release; images of two sizes, one JPEG."""
    for split in splits:
        (root / split).mkdir(parents=True)
        lines = []
        for n, patient in enumerate(PATIENTS[split]):
            for k in range(2):
                filename = f"{patient}-{k}.jpg" if (n, k) == (1, 1) else f"{patient}-{k}.png"
                size = 24 if k else 32
                img = np.full((size, size), value(patient, k), np.uint8)
                Image.fromarray(img).save(root / split / filename, quality=95)
                lines.append(f"{patient} {filename} {label_of(patient)} {'rsna' if k else 'bimcv'}")
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def by_source(data: ShardDataset) -> dict[str, int]:
    return {s: i for i, s in enumerate(data.read_column("source"))}


def test_official_splits_labels_and_groups(tmp_path: Path) -> None:
    src = make_covidx(tmp_path / "covidx")
    opts = IngestOptions(format="covidx", image_size=16)
    manifest = ingest(src, tmp_path / "out", opts, progress=False)
    verify_shard_set(tmp_path / "out")
    assert manifest.class_names == ["negative", "positive"]
    assert manifest.split_counts() == {"train": 24, "val": 4, "test": 6}

    data = ShardDataset(tmp_path / "out")
    rows = by_source(data)
    assert data.labels[rows["train/p3-0.png"]] == 1 and data.labels[rows["test/t2-1.png"]] == 0
    assert int(data[rows["val/v1-0.png"]]["image"][0, 8, 8]) == value("v1", 0)  # 32 -> 16 px
    assert int(data[rows["train/p5-1.png"]]["image"][0, 8, 8]) == value("p5", 1)  # 24 -> 16 px
    split, group = data.read_column("split"), data.read_column("group")
    assert split[rows["val/v0-1.png"]] == 1 and split[rows["train/p1-1.jpg"]] == 0
    for s, name in enumerate(("train", "val", "test")):
        assert set(group[split == s]) == set(PATIENTS[name])  # given splits kept, val not carved


def test_train_and_test_only_carves_val(tmp_path: Path) -> None:
    src = make_covidx(tmp_path / "covidx", ("train", "test"))
    opts = IngestOptions(format="covidx", image_size=16, split_fractions=(0.6, 0.2, 0.2))
    manifest = ingest(src, tmp_path / "out", opts, progress=False)
    counts = manifest.split_counts()
    assert counts["test"] == 6 and counts["val"] > 0 and counts["train"] + counts["val"] == 24
    data = ShardDataset(tmp_path / "out")
    split, group = data.read_column("split"), data.read_column("group")
    train, val = set(group[split == 0]), set(group[split == 1])
    assert not (train & val) and train | val == set(PATIENTS["train"])


def test_limit_keeps_every_split(tmp_path: Path) -> None:
    src = make_covidx(tmp_path / "covidx")
    (src / "val" / "v1-0.png").unlink()  # beyond the limit: not needed
    adapter = COVIDxAdapter(src, IngestOptions(limit=17))
    assert [r.split for r in adapter.rows].count(
        "test"
    ) == 3 and adapter.info().expected_count == 17


def test_sniff(tmp_path: Path) -> None:
    src = make_covidx(tmp_path / "covidx", ("test",))
    assert COVIDxAdapter.sniff(src) and not NIHAdapter.sniff(src)
    assert resolve_adapter(src, "auto") is COVIDxAdapter
    (src / "test").rename(src / "pictures")
    assert not COVIDxAdapter.sniff(src)
    (src / "pictures").rename(src / "test")
    (src / "test.txt").write_text("just some notes\n")
    assert not COVIDxAdapter.sniff(src)


def assert_fails(src: Path, out: Path, match: str, **options: object) -> DataError:
    with pytest.raises(DataError, match=match) as err:
        ingest(src, out, IngestOptions(format="covidx", image_size=16, **options), progress=False)
    assert not out.exists()
    return err.value


def test_malformed_line(tmp_path: Path) -> None:
    src = make_covidx(tmp_path / "covidx")
    lines = (src / "val.txt").read_text().splitlines()
    lines[2] = "v1 v1-0.png positive"  # the data source field is gone
    (src / "val.txt").write_text("\n".join(lines) + "\n")
    err = assert_fails(src, tmp_path / "out", "line 3: 3 fields, expected 4")
    assert str(src / "val.txt") in err.what


def test_unknown_label_and_class_names(tmp_path: Path) -> None:
    src = make_covidx(tmp_path / "covidx", ("train",))
    text = (src / "train.txt").read_text()
    (src / "train.txt").write_text(text.replace("positive", "COVID-19", 1))
    err = assert_fails(src, tmp_path / "out", "label 'COVID-19' is not in the class list")
    assert "train.txt line 3" in err.what
    # an older three-class COVIDx reads with --class-names
    opts = IngestOptions(class_names=["negative", "positive", "COVID-19"])
    assert COVIDxAdapter(src, opts).rows[2].label == 2


def test_missing_image(tmp_path: Path) -> None:
    src = make_covidx(tmp_path / "covidx")
    (src / "test" / "t1-0.png").unlink()
    err = assert_fails(src, tmp_path / "out", "t1-0.png does not exist")
    assert str(src / "test" / "t1-0.png") in err.what


def test_truncated_image(tmp_path: Path) -> None:
    src = make_covidx(tmp_path / "covidx")
    path = src / "train" / "p2-0.png"
    Image.fromarray(np.arange(4096, dtype=np.uint32).reshape(64, 64).astype(np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert_fails(src, tmp_path / "out", "p2-0.png is not a readable image")


def test_cli(tmp_path: Path) -> None:
    src = make_covidx(tmp_path / "covidx")
    cmd = [str(SYNMED), "data", "ingest", str(src), "--format", "covidx", "--quiet"]
    ok = subprocess.run(
        [*cmd, "--out", str(tmp_path / "out"), "--image-size", "16"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    (src / "test.txt").write_text("t0 t0-0.png\n")
    bad = subprocess.run(
        [*cmd, "--out", str(tmp_path / "bad")], capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2 and "test.txt line 1" in bad.stderr, bad.stderr
    assert not (tmp_path / "bad").exists()


def test_a_filename_leading_out_of_the_images_folder_is_refused(tmp_path: Path) -> None:
    src = make_covidx(tmp_path / "covidx", ("train",))
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "outside.png")
    text = (src / "train.txt").read_text()
    (src / "train.txt").write_text(text.replace("p0-0.png", "../../outside.png", 1))
    err = assert_fails(
        src, tmp_path / "out", r"train.txt line 1: image .*outside.png leads outside"
    )
    assert "'..'" in (err.fix or "")


def test_a_path_like_label_is_refused_by_name(tmp_path: Path) -> None:
    src = make_covidx(tmp_path / "covidx", ("train",))
    text = (src / "train.txt").read_text()
    (src / "train.txt").write_text(text.replace("positive", "../positive", 1))
    err = assert_fails(
        src, tmp_path / "out", r"class name '../positive' in .*train.txt line 3 is not a plain name"
    )
    assert "rename the class" in (err.fix or "")
