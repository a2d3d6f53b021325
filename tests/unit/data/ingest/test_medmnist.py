"""MedMNIST v2 .npz files written with the release's key names, shapes and dtypes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from suite.data.dataset import ShardDataset
from suite.data.ingest.adapters import resolve_adapter
from suite.data.ingest.idx import IDXAdapter
from suite.data.ingest.medmnist import CLASS_NAMES, NIH_FINDINGS, MedMNISTAdapter
from suite.data.ingest.options import IngestOptions
from suite.data.ingest.pipeline import ingest
from suite.data.verify import verify_shard_set
from suite.errors import DataError

SYNMED = Path(sys.executable).parent / "synmed"
COUNTS = {"train": 40, "val": 6, "test": 12}


def make_npz(
    path: Path, *, k: int = 2, multilabel: bool = False, rgb: bool = False, splits=COUNTS
) -> dict[str, np.ndarray]:
    """28 px uint8 images; labels (N, 1) uint8 ids or (N, K) multi-hot, as medmnist writes them."""
    rng = np.random.default_rng(len(path.name))
    arrays = {}
    for split, n in splits.items():
        shape = (n, 28, 28, 3) if rgb else (n, 28, 28)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        if multilabel:
            arrays[f"{split}_labels"] = (rng.random((n, k)) < 0.3).astype(np.uint8)
        else:
            arrays[f"{split}_labels"] = rng.integers(0, k, (n, 1), dtype=np.uint8)
    np.savez_compressed(path, **arrays)
    return arrays


def test_pneumonia_keeps_splits_images_and_labels(tmp_path: Path) -> None:
    arrays = make_npz(tmp_path / "pneumoniamnist.npz")
    manifest = ingest(
        tmp_path / "pneumoniamnist.npz",
        tmp_path / "out",
        IngestOptions(format="medmnist"),
        progress=False,
    )
    verify_shard_set(tmp_path / "out")
    assert manifest.class_names == ["normal", "pneumonia"]
    assert manifest.split_counts() == COUNTS
    data = ShardDataset(tmp_path / "out")
    sources = list(data.read_column("source"))
    for split, i in (("train", 0), ("train", 39), ("val", 3), ("test", 11)):
        row = sources.index(f"pneumoniamnist.npz#{split}/{i}")
        assert np.array_equal(data[row]["image"][0].numpy(), arrays[f"{split}_images"][i])
        assert data[row]["label"] == arrays[f"{split}_labels"][i, 0]
        assert data.read_column("split")[row] == ("train", "val", "test").index(split)


def test_chest_is_multilabel_with_nih_names(tmp_path: Path) -> None:
    arrays = make_npz(tmp_path / "chestmnist.npz", k=14, multilabel=True)
    manifest = ingest(
        tmp_path / "chestmnist.npz",
        tmp_path / "out",
        IngestOptions(format="medmnist"),
        progress=False,
    )
    verify_shard_set(tmp_path / "out")
    assert manifest.attrs["label_kind"] == "multilabel" and manifest.class_names == NIH_FINDINGS
    data = ShardDataset(tmp_path / "out")
    sources = list(data.read_column("source"))
    for split, i in (("train", 5), ("val", 0), ("test", 7)):
        row = sources.index(f"chestmnist.npz#{split}/{i}")
        assert data.labels[row].tolist() == arrays[f"{split}_labels"][i].tolist()
    assert data.labels.sum() == sum(arrays[f"{s}_labels"].sum() for s in COUNTS)


def test_rgb_pathmnist_names(tmp_path: Path) -> None:
    path = tmp_path / "pathmnist_64.npz"  # MedMNIST+ names carry the size
    arrays = make_npz(path, k=9, rgb=True)
    ingest(path, tmp_path / "out", IngestOptions(format="medmnist", channels=3), progress=False)
    data = ShardDataset(tmp_path / "out")
    assert data.class_names[8] == "colorectal adenocarcinoma epithelium"
    assert len(data.class_names) == 9 == len(CLASS_NAMES["pathmnist"])
    row = list(data.read_column("source")).index("pathmnist_64.npz#test/2")
    assert np.array_equal(data[row]["image"].numpy(), arrays["test_images"][2].transpose(2, 0, 1))


def test_unknown_name_and_override(tmp_path: Path) -> None:
    make_npz(tmp_path / "mystery.npz", k=3)
    assert MedMNISTAdapter(tmp_path / "mystery.npz", IngestOptions()).class_names == ["0", "1", "2"]
    opts = IngestOptions(class_names=["a", "b", "c", "d"])
    assert MedMNISTAdapter(tmp_path / "mystery.npz", opts).class_names == ["a", "b", "c", "d"]
    # a file named like a known flag whose labels do not fit falls back to ids
    make_npz(tmp_path / "breastmnist.npz", k=5)
    assert MedMNISTAdapter(tmp_path / "breastmnist.npz", IngestOptions()).class_names[4] == "4"
    make_npz(tmp_path / "chestmnist.npz", k=14, multilabel=True)
    with pytest.raises(DataError, match="14 columns but there are 2 class names"):
        MedMNISTAdapter(tmp_path / "chestmnist.npz", IngestOptions(class_names=["a", "b"]))


def test_without_val_carves_it_and_limit_keeps_every_split(tmp_path: Path) -> None:
    path = tmp_path / "octmnist.npz"
    make_npz(path, k=4, splits={"train": 60, "test": 20})
    manifest = ingest(path, tmp_path / "out", IngestOptions(format="medmnist"), progress=False)
    counts = manifest.split_counts()
    assert counts["test"] == 20 and counts["val"] > 0 and counts["train"] + counts["val"] == 60
    adapter = MedMNISTAdapter(path, IngestOptions(limit=8))
    assert [r.split for r in adapter.records()] == ["train"] * 6 + ["test"] * 2


def test_sniff(tmp_path: Path) -> None:
    make_npz(tmp_path / "bloodmnist.npz", k=8)
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    assert MedMNISTAdapter.sniff(tmp_path / "bloodmnist.npz")
    assert not MedMNISTAdapter.sniff(tmp_path / "other.npz")
    assert not IDXAdapter.sniff(tmp_path / "bloodmnist.npz")
    assert resolve_adapter(tmp_path / "bloodmnist.npz", "auto") is MedMNISTAdapter


def assert_fails(src: Path, out: Path, match: str) -> DataError:
    with pytest.raises(DataError, match=match) as err:
        ingest(src, out, IngestOptions(format="medmnist"), progress=False)
    assert not out.exists()
    assert str(src) in err.value.what
    return err.value


def test_missing_keys(tmp_path: Path) -> None:
    arrays = make_npz(tmp_path / "full.npz")
    path = tmp_path / "pneumoniamnist.npz"
    np.savez_compressed(path, **{k: v for k, v in arrays.items() if k != "val_labels"})
    err = assert_fails(path, tmp_path / "out", "missing key")
    assert "val_labels" in err.what and "the file has: test_images, test_labels" in err.what
    np.savez_compressed(path, images=arrays["train_images"])
    assert_fails(path, tmp_path / "out", r"missing key.*the file has: images\)")


def test_truncated_npz(tmp_path: Path) -> None:
    path = tmp_path / "pneumoniamnist.npz"
    make_npz(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert_fails(path, tmp_path / "out", "is not a readable .npz")


def test_corrupt_member_found_while_streaming(tmp_path: Path) -> None:
    path = tmp_path / "pneumoniamnist.npz"
    arrays = make_npz(path)
    np.savez(path, **arrays)  # stored, not deflated: flip image bytes in place
    raw = bytearray(path.read_bytes())
    at = raw.find(arrays["test_images"][5].tobytes())
    raw[at : at + 10] = bytes(10)
    path.write_bytes(bytes(raw))
    assert_fails(path, tmp_path / "out", "truncated or corrupt .*Bad CRC-32")


def test_pickled_arrays_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "pneumoniamnist.npz"
    arrays = make_npz(path)
    arrays["train_labels"] = np.array([[1]] * 40, dtype=object)
    np.savez(path, **arrays)  # object arrays are stored as pickles
    assert_fails(path, tmp_path / "out", "not a readable .npz .*allow_pickle")


def test_cli(tmp_path: Path) -> None:
    path = tmp_path / "chestmnist.npz"
    make_npz(path, k=14, multilabel=True)
    cmd = [str(SYNMED), "data", "ingest", str(path), "--format", "medmnist", "--quiet"]
    ok = subprocess.run(
        [*cmd, "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120
    )
    assert ok.returncode == 0, ok.stderr
    np.savez(path, train_images=np.zeros((2, 28, 28), np.uint8))
    bad = subprocess.run(
        [*cmd, "--out", str(tmp_path / "bad")], capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2 and "chestmnist.npz" in bad.stderr and "train_labels" in bad.stderr
    assert not (tmp_path / "bad").exists()
