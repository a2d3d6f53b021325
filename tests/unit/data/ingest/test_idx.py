"""IDX on the real Fashion-MNIST (Debian's dataset-fashion-mnist: 60k + 10k gzipped IDX files)."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from suite.data.dataset import ShardDataset
from suite.data.ingest.adapters import resolve_adapter
from suite.data.ingest.idx import FASHION_MNIST_CLASSES, IDXAdapter, read_header
from suite.data.ingest.medmnist import MedMNISTAdapter
from suite.data.ingest.options import IngestOptions
from suite.data.ingest.pipeline import ingest
from suite.data.verify import verify_shard_set
from suite.errors import DataError
from tests.conftest import need

SYNMED = Path(sys.executable).parent / "synmed"
FASHION = Path("/usr/share/datasets/fashion-mnist")
if not FASHION.is_dir():
    need("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist, Debian)")


def test_headers_and_class_balance() -> None:
    adapter = IDXAdapter(FASHION, IngestOptions())
    train, test = adapter.parts
    assert (train.split, train.images.shape) == ("train", (60000, 28, 28))
    assert (test.split, test.images.shape) == ("test", (10000, 28, 28))
    assert train.images.dtype == np.uint8 and train.images.path.name.endswith(".gz")
    # Fashion-MNIST is exactly balanced (Xiao et al. 2017): 6,000 and 1,000 per class
    assert np.bincount(train.labels).tolist() == [6000] * 10
    assert np.bincount(test.labels).tolist() == [1000] * 10
    # ... and shuffled, so the first 500 already hold every class in plausible numbers
    first = np.bincount(train.labels[:500], minlength=10)
    assert first.min() >= 25 and first.max() <= 80
    assert adapter.class_names == FASHION_MNIST_CLASSES
    assert read_header(FASHION / "t10k-labels-idx1-ubyte.gz").shape == (10000,)


def test_ingest_with_limit(tmp_path: Path) -> None:
    opts = IngestOptions(format="idx", limit=500, split_fractions=(0.8, 0.1, 0.1))
    manifest = ingest(FASHION, tmp_path / "out", opts, progress=False)
    verify_shard_set(tmp_path / "out")
    counts = manifest.split_counts()
    # --limit takes from both files in proportion (60k:10k), so the quick look keeps a test split
    assert counts["test"] == 71 and counts["train"] + counts["val"] == 429 and counts["val"] > 20
    assert manifest.class_names == FASHION_MNIST_CLASSES

    data = ShardDataset(tmp_path / "out")
    sources = list(data.read_column("source"))
    first_train = sources.index("train-images-idx3-ubyte.gz#0")
    first_test = sources.index("t10k-images-idx3-ubyte.gz#0")
    # the first image of both files is an ankle boot (label 9); the third test image a trouser
    assert data[first_train]["label"] == 9 and data[first_test]["label"] == 9
    assert data[sources.index("t10k-images-idx3-ubyte.gz#2")]["label"] == 1
    boot = data[first_train]["image"][0].numpy()
    # white object on black: empty top and bottom rows, the wide sole lower down than the shaft
    assert boot.shape == (28, 28) and boot[:3].max() == 0 and boot[-2:].max() == 0
    assert boot[14:].mean() > 2 * boot[:10].mean() and boot.max() > 200
    trouser = data[sources.index("t10k-images-idx3-ubyte.gz#2")]["image"][0].numpy()
    filled = (trouser > 0).mean(axis=0)  # per column: two legs with a gap near the middle
    assert filled[13:16].min() < 0.5 * min(filled[9:13].max(), filled[16:20].max())
    # no patients: every image is its own group
    assert len(set(data.read_column("group"))) == 500


def test_plain_files_dot_names_and_digit_classes(tmp_path: Path) -> None:
    src = tmp_path / "mnist"
    src.mkdir()
    for gz, plain in (
        ("t10k-images-idx3-ubyte.gz", "t10k-images.idx3-ubyte"),
        ("t10k-labels-idx1-ubyte.gz", "t10k-labels.idx1-ubyte"),
    ):
        with gzip.open(FASHION / gz, "rb") as f:
            (src / plain).write_bytes(f.read())
    adapter = IDXAdapter(src, IngestOptions(limit=50))
    assert adapter.class_names == [str(i) for i in range(10)]  # no "fashion" in the path
    records = list(adapter.records())
    with gzip.open(FASHION / "t10k-images-idx3-ubyte.gz", "rb") as f:
        images = np.frombuffer(f.read(16 + 50 * 784)[16:], np.uint8).reshape(50, 28, 28)
    assert all(np.array_equal(r.image, images[i]) for i, r in enumerate(records))
    assert [r.label for r in records[:10]] == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert {r.split for r in records} == {"test"}
    assert IDXAdapter.sniff(src) and not MedMNISTAdapter.sniff(src)
    assert resolve_adapter(src, "auto") is IDXAdapter


def copy_fashion(dst: Path) -> Path:
    dst.mkdir()
    for path in FASHION.glob("*.gz"):
        (dst / path.name).symlink_to(path)
    return dst


def assert_fails(src: Path, out: Path, match: str) -> DataError:
    with pytest.raises(DataError, match=match) as err:
        ingest(src, out, IngestOptions(format="idx", limit=100), progress=False)
    assert not out.exists()
    return err.value


def test_truncated_gz(tmp_path: Path) -> None:
    src = copy_fashion(tmp_path / "fashion")
    name = "t10k-images-idx3-ubyte.gz"
    (src / name).unlink()
    data = (FASHION / name).read_bytes()
    (src / name).write_bytes(data[: len(data) // 2])
    err = assert_fails(src, tmp_path / "out", "is truncated or corrupt")
    assert str(src / name) in err.what and "10000x28x28" in err.what


def test_truncated_plain_and_bad_magic(tmp_path: Path) -> None:
    src = tmp_path / "mnist"
    src.mkdir()
    with gzip.open(FASHION / "t10k-labels-idx1-ubyte.gz", "rb") as f:
        (src / "t10k-labels-idx1-ubyte").write_bytes(f.read())
    with gzip.open(FASHION / "t10k-images-idx3-ubyte.gz", "rb") as f:
        (src / "t10k-images-idx3-ubyte").write_bytes(f.read(16 + 784 * 9999 + 100))
    err = assert_fails(src, tmp_path / "out", "t10k-images-idx3-ubyte is truncated")
    assert "7840016 bytes" in err.what
    (src / "t10k-images-idx3-ubyte").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    assert_fails(src, tmp_path / "out", "t10k-images-idx3-ubyte is not an IDX file")


def test_count_mismatch_and_missing_partner(tmp_path: Path) -> None:
    src = copy_fashion(tmp_path / "fashion")
    (src / "train-labels-idx1-ubyte.gz").unlink()
    assert_fails(src, tmp_path / "out", "has no partner file train-labels-idx1")
    shutil.copy(FASHION / "t10k-labels-idx1-ubyte.gz", src / "train-labels-idx1-ubyte.gz")
    assert_fails(src, tmp_path / "out", "holds 60000 images but .* holds 10000 labels")


def test_cli(tmp_path: Path) -> None:
    cmd = [str(SYNMED), "data", "ingest", "--format", "idx", "--quiet"]
    ok = subprocess.run(
        [*cmd, str(FASHION), "--out", str(tmp_path / "out"), "--limit", "200"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert "Ankle boot" in ok.stdout
    src = copy_fashion(tmp_path / "fashion")
    (src / "train-labels-idx1-ubyte.gz").unlink()
    (src / "train-labels-idx1-ubyte.gz").write_bytes(b"\x00\x00\x08\x01")
    bad = subprocess.run(
        [*cmd, str(src), "--out", str(tmp_path / "bad")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "train-labels-idx1-ubyte.gz" in bad.stderr, bad.stderr
    assert not (tmp_path / "bad").exists()
