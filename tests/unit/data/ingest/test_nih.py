"""NIH ChestX-ray14: a small copy of the release layout (CSV, list files, images_0NN/images/*.png)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from suite.data.dataset import ShardDataset
from suite.data.ingest.adapters import resolve_adapter
from suite.data.ingest.covidx import COVIDxAdapter
from suite.data.ingest.nih import NIH_FINDINGS, NIHAdapter
from suite.data.ingest.options import IngestOptions
from suite.data.ingest.pipeline import ingest
from suite.data.verify import verify_shard_set
from suite.errors import DataError

SYNMED = Path(sys.executable).parent / "synmed"
# The release's header line, verbatim: bracketed names with commas inside, and a trailing comma.
HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImageSpacing[x,y],"
)
FINDINGS = [
    "No Finding",
    "Cardiomegaly|Emphysema",
    "Effusion",
    "Atelectasis|Effusion|Infiltration",
    "Hernia",
    "Pleural_Thickening|Nodule",
    "No Finding",
    "Mass|Pneumothorax|Consolidation|Edema|Fibrosis|Pneumonia",
]
PATIENTS = 20
TEST_PATIENTS = range(16, 21)  # the official test list: patients 16..20
SKIPPED = "00000009_001.png"  # in neither list


def name(patient: int, follow_up: int) -> str:
    return f"{patient:08d}_{follow_up:03d}.png"


def value(patient: int, follow_up: int) -> int:
    return (patient * 11 + follow_up * 3) % 256


def make_nih(root: Path, *, lists: bool = True, header: str = HEADER) -> Path:
    """20 patients x 2 images, 16x16 PNGs split over images_001 and images_002 like the release."""
    lines = [header]
    train_val, test = [], []
    k = 0
    for p in range(1, PATIENTS + 1):
        for f in range(2):
            img = name(p, f)
            findings = FINDINGS[k % len(FINDINGS)]
            k += 1
            # Kaggle rows have 11 values (no trailing comma); some copies keep one
            tail = "," if p % 2 else ""
            lines.append(f"{img},{findings},{f},{p},{40 + p},M,PA,2500,2048,0.143,0.143{tail}")
            folder = root / ("images_001" if p <= 10 else "images_002") / "images"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((16, 16), value(p, f), np.uint8)).save(folder / img)
            if img == SKIPPED:
                continue
            (test if p in TEST_PATIENTS else train_val).append(img)
    (root / "Data_Entry_2017.csv").write_text("\n".join(lines) + "\n")
    if lists:
        (root / "train_val_list.txt").write_text("\n".join(train_val) + "\n")
        (root / "test_list.txt").write_text("\n".join(test) + "\n")
    return root


def hot(*findings: str) -> list[int]:
    return [int(c in findings) for c in NIH_FINDINGS]


def rows_by_name(data: ShardDataset) -> dict[str, int]:
    return {Path(s).name: i for i, s in enumerate(data.read_column("source"))}


def groups_per_split(data: ShardDataset) -> list[set[str]]:
    split, group = data.read_column("split"), data.read_column("group")
    return [set(group[split == s]) for s in range(3)]


def test_official_lists_labels_and_patient_splits(tmp_path: Path) -> None:
    src = make_nih(tmp_path / "nih")
    opts = IngestOptions(format="nih", split_fractions=(0.6, 0.2, 0.2))
    info = NIHAdapter(src, opts).info()
    assert "1 images in neither list skipped" in info.description and info.expected_count == 39
    manifest = ingest(src, tmp_path / "out", opts, progress=False)
    report = verify_shard_set(tmp_path / "out")
    assert report.count == 39 and report.image_shape == (1, 16, 16)
    assert manifest.class_names == NIH_FINDINGS
    assert manifest.attrs["label_kind"] == "multilabel"

    data = ShardDataset(tmp_path / "out")
    rows = rows_by_name(data)
    assert SKIPPED not in rows
    assert data.labels[rows[name(1, 0)]].tolist() == hot()  # No Finding: all zeros
    assert data.labels[rows[name(1, 1)]].tolist() == hot("Cardiomegaly", "Emphysema")
    assert data.labels[rows[name(2, 1)]].tolist() == hot("Atelectasis", "Effusion", "Infiltration")
    assert data.labels[rows[name(3, 1)]].tolist() == hot("Pleural_Thickening", "Nodule")
    assert data.labels[rows[name(4, 1)]].tolist() == hot(
        "Mass", "Pneumothorax", "Consolidation", "Edema", "Fibrosis", "Pneumonia"
    )
    assert data.labels[rows[name(3, 0)]].tolist() == hot("Hernia")
    assert int(data[rows[name(12, 1)]]["image"][0, 5, 5]) == value(12, 1)
    assert data.read_column("source")[rows[name(12, 1)]] == "images_002/images/00000012_001.png"

    # the test list is honoured exactly; val is carved out of train_val by patient
    split, group = data.read_column("split"), data.read_column("group")
    test_names = {n for n, i in rows.items() if split[i] == 2}
    assert test_names == {name(p, f) for p in TEST_PATIENTS for f in range(2)}
    train, val, test = groups_per_split(data)
    assert train and val and not (train & val) and not (train & test) and not (val & test)
    assert test == {str(p) for p in TEST_PATIENTS}
    assert group[rows[name(7, 0)]] == "7"
    body = json.loads((tmp_path / "out" / "splits.json").read_text())
    assert body["splits"]["test"]["count"] == 10


def test_without_lists_splits_by_patient(tmp_path: Path) -> None:
    src = make_nih(tmp_path / "nih", lists=False)
    ingest(src, tmp_path / "out", IngestOptions(format="nih"), progress=False)
    data = ShardDataset(tmp_path / "out")
    assert len(data) == 40  # nothing skipped without lists
    train, val, test = groups_per_split(data)
    assert train and not (train & val) and not (train & test) and not (val & test)
    assert json.loads((tmp_path / "out" / "splits.json").read_text())["policy"] == "group"


def test_csv_as_source_images_elsewhere_and_limit(tmp_path: Path) -> None:
    data = tmp_path / "data"  # --images-dir; --out lies outside it (an output is never in an input)
    src = make_nih(data / "nih")
    moved = data / "pngs"
    (src / "images_002").rename(moved)
    opts = IngestOptions(format="nih", images_dir=data)
    manifest = ingest(src / "Data_Entry_2017.csv", tmp_path / "out", opts, progress=False)
    assert manifest.count == 39
    # a partial download (images_001 only) can be looked at with --limit
    (moved / "images" / name(12, 0)).unlink()
    with pytest.raises(DataError, match="00000012_000.png is not found"):
        NIHAdapter(src, IngestOptions(images_dir=data))
    NIHAdapter(src, IngestOptions(images_dir=data, limit=10))


def test_sniff(tmp_path: Path) -> None:
    src = make_nih(tmp_path / "nih")
    assert NIHAdapter.sniff(src) and NIHAdapter.sniff(src / "Data_Entry_2017.csv")
    assert not NIHAdapter.sniff(src / "images_001") and not COVIDxAdapter.sniff(src)
    assert resolve_adapter(src, "auto") is NIHAdapter


def assert_fails(src: Path, out: Path, match: str, **options: object) -> DataError:
    with pytest.raises(DataError, match=match) as err:
        ingest(src, out, IngestOptions(format="nih", **options), progress=False)
    assert not out.exists()
    return err.value


def test_csv_missing_a_column(tmp_path: Path) -> None:
    src = make_nih(tmp_path / "nih", header=HEADER.replace("Patient ID", "Patient"))
    err = assert_fails(src, tmp_path / "out", "Data_Entry_2017.csv: column")
    assert (
        "Patient ID missing" in err.what and "the CSV has: Image Index, Finding Labels" in err.what
    )


def test_finding_outside_the_class_list(tmp_path: Path) -> None:
    src = make_nih(tmp_path / "nih")
    err = assert_fails(
        src, tmp_path / "out", "not in the class list", class_names=["Effusion", "Cardiomegaly"]
    )
    assert "Data_Entry_2017.csv line 3 (00000001_001.png)" in err.what and "'Emphysema'" in err.what
    csv = src / "Data_Entry_2017.csv"
    csv.write_text(csv.read_text().replace("Hernia", "COVID-19", 1))
    assert_fails(src, tmp_path / "out", "finding 'COVID-19' is not in the class list")


def test_missing_image(tmp_path: Path) -> None:
    src = make_nih(tmp_path / "nih")
    (src / "images_002" / "images" / name(15, 1)).unlink()
    assert_fails(src, tmp_path / "out", r"image 00000015_001.png is not found .*1 of 39")


def test_truncated_png(tmp_path: Path) -> None:
    src = make_nih(tmp_path / "nih")
    path = src / "images_001" / "images" / name(5, 0)
    Image.fromarray(np.arange(64 * 64, dtype=np.uint32).reshape(64, 64).astype(np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    err = assert_fails(src, tmp_path / "out", "00000005_000.png is not a readable image")
    assert str(path) in err.what


def test_cli(tmp_path: Path) -> None:
    src = make_nih(tmp_path / "nih")
    ok = subprocess.run(
        [
            str(SYNMED),
            "data",
            "ingest",
            str(src),
            "--out",
            str(tmp_path / "out"),
            "--format",
            "nih",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["attrs"]["format"] == "nih"
    (src / "Data_Entry_2017.csv").write_text(HEADER.replace("Finding Labels", "Labels") + "\n")
    bad = subprocess.run(
        [
            str(SYNMED),
            "data",
            "ingest",
            str(src),
            "--out",
            str(tmp_path / "bad"),
            "--format",
            "nih",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "Data_Entry_2017.csv" in bad.stderr, bad.stderr
    assert "Finding Labels" in bad.stderr and not (tmp_path / "bad").exists()


def test_a_dot_dot_class_name_in_the_csv_is_refused_by_name(tmp_path: Path) -> None:
    src = make_nih(tmp_path / "nih", lists=False)
    csv = src / "Data_Entry_2017.csv"
    lines = csv.read_text().splitlines()
    fields = lines[3].split(",")
    fields[1] = "../Effusion"
    lines[3] = ",".join(fields)
    csv.write_text("\n".join(lines) + "\n")
    names = [*NIH_FINDINGS, "../Effusion"]  # even when the class list names it
    err = assert_fails(
        src,
        tmp_path / "out",
        r"class name '\.\./Effusion' in .*line 4 .* is not a plain name",
        class_names=names,
    )
    assert fields[0] in err.what


def test_an_image_index_that_is_a_path_is_refused(tmp_path: Path) -> None:
    src = make_nih(tmp_path / "nih", lists=False)
    csv = src / "Data_Entry_2017.csv"
    csv.write_text(csv.read_text().replace(name(1, 0), f"../{name(1, 0)}", 1))
    assert_fails(src, tmp_path / "out", rf"line 2: Image Index '\.\./{name(1, 0)}' is not a file")
