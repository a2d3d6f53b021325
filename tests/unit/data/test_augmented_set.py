"""Seed 004's "+ conventional augmentation" set: seeded augmented copies of one class's
training images, labelled as the images they copy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from suite.data.augmented_set import ConventionalAugment, write_augmented_set
from suite.data.dataset import ShardDataset
from suite.data.verify import verify_shard_set
from suite.data.writer import ShardSetWriter
from suite.errors import DataError, ShardError
from tests.unit.data.helpers import make_shard_set, pattern

# label per row: class b is the rarest of the train rows (split 0)
LABELS = [0, 0, 1, 2, 0, 2, 0, 1, 2, 2, 0, 2]
SPLITS = [0, 0, 0, 0, 0, 0, 1, 1, 2, 2, 0, 0]


def labelled_set(directory: Path) -> Path:
    directory.mkdir(parents=True)
    attrs = {"source": "real", "class_names": ["a", "b", "c"], "label_kind": "multiclass"}
    writer = ShardSetWriter(directory, attrs, shard_size=5)
    for i, (label, split) in enumerate(zip(LABELS, SPLITS)):
        # a bright square off centre, so that every flip, turn and zoom moves pixels
        image = (pattern(i) // 4).astype(np.uint8)
        image[:, 2:7, 3:9] = 230
        writer.add({"images": image, "labels": label, "split": split, "index": i})
    writer.close()
    return directory


def images(directory: Path) -> np.ndarray:
    ds = ShardDataset(directory)
    return np.stack([ds[i]["image"].numpy() for i in range(len(ds))])


def test_copies_of_the_named_classes_training_images_only(tmp_path: Path) -> None:
    real = labelled_set(tmp_path / "real")
    options = ConventionalAugment(classes=["c"], copies=2)
    written = write_augmented_set(real, tmp_path / "aug", options, seed=3)
    verify_shard_set(tmp_path / "aug")
    ds = ShardDataset(tmp_path / "aug")
    train_c = [i for i, (lab, s) in enumerate(zip(LABELS, SPLITS)) if lab == 2 and s == 0]
    assert written == {"classes": ["c"], "rows": 2 * len(train_c)}
    assert ds.class_names == ["a", "b", "c"] and ds.labels.tolist() == [2] * (2 * len(train_c))
    attrs = ds.manifest.attrs
    assert attrs["source"] == "augmented" and attrs["augment"]["seed"] == 3
    assert attrs["augmented_from"]["path"] == str(real.resolve())
    copies = images(tmp_path / "aug")
    originals = np.stack([ShardDataset(real)[i]["image"].numpy() for i in train_c])
    assert copies.shape == (2 * len(train_c), *originals.shape[1:])
    # every copy differs from the image it copies, and the two copies of an image differ
    for k in range(len(train_c)):
        first, second = copies[k], copies[len(train_c) + k]
        assert not np.array_equal(first, originals[k]) and not np.array_equal(first, second)


def test_the_same_seed_writes_the_same_images_another_seed_others(tmp_path: Path) -> None:
    real = labelled_set(tmp_path / "real")
    options = ConventionalAugment(classes=["a", "c"])
    for name, seed in (("one", 0), ("again", 0), ("other", 1)):
        write_augmented_set(real, tmp_path / name, options, seed=seed)
    assert np.array_equal(images(tmp_path / "one"), images(tmp_path / "again"))
    assert not np.array_equal(images(tmp_path / "one"), images(tmp_path / "other"))


def test_without_classes_the_rarest_training_class_is_copied(tmp_path: Path) -> None:
    real = labelled_set(tmp_path / "real")
    written = write_augmented_set(real, tmp_path / "aug", ConventionalAugment(), seed=0)
    assert written == {"classes": ["b"], "rows": 1}  # b has one train row (row 2)


def test_no_transform_copies_the_images_exactly(tmp_path: Path) -> None:
    real = labelled_set(tmp_path / "real")
    off = ConventionalAugment(
        classes=["a"], hflip=False, degrees=0, translate=0, scale=0, brightness=0, contrast=0
    )
    write_augmented_set(real, tmp_path / "aug", off, seed=0)
    train_a = [i for i, (lab, s) in enumerate(zip(LABELS, SPLITS)) if lab == 0 and s == 0]
    originals = np.stack([ShardDataset(real)[i]["image"].numpy() for i in train_a])
    assert np.array_equal(images(tmp_path / "aug"), originals)


def test_an_unknown_class_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    real = labelled_set(tmp_path / "real")
    with pytest.raises(DataError, match=r"augment.classes names \['Shirt'\]") as err:
        write_augmented_set(real, tmp_path / "aug", ConventionalAugment(classes=["Shirt"]), 0)
    assert "a, b, c" in err.value.fix
    assert not (tmp_path / "aug").exists()


def test_an_unlabelled_or_unsplit_set_is_refused(tmp_path: Path) -> None:
    unlabelled = tmp_path / "unlabelled"
    unlabelled.mkdir()
    writer = ShardSetWriter(unlabelled, {"source": "real", "class_names": []}, shard_size=4)
    for i in range(3):
        writer.add({"images": pattern(i), "index": i, "split": 0})
    writer.close()
    with pytest.raises(DataError, match="no single-label classes"):
        write_augmented_set(unlabelled, tmp_path / "aug", ConventionalAugment(), 0)
    multilabel = make_shard_set(tmp_path / "multi", multilabel=True)
    with pytest.raises(DataError, match="no single-label classes"):
        write_augmented_set(multilabel, tmp_path / "aug", ConventionalAugment(), 0)
    assert not (tmp_path / "aug").exists()


def one_class_set(directory: Path, *, split: int | None) -> Path:
    """Three rows of class a, all in ``split`` (None: no split column)."""
    directory.mkdir()
    attrs = {"source": "real", "class_names": ["a"], "label_kind": "multiclass"}
    writer = ShardSetWriter(directory, attrs, shard_size=4)
    for i in range(3):
        row = {"images": pattern(i), "labels": 0, "index": i}
        writer.add(row if split is None else {**row, "split": split})
    writer.close()
    return directory


def test_an_empty_split_is_refused(tmp_path: Path) -> None:
    train_only = one_class_set(tmp_path / "noval", split=0)
    with pytest.raises(DataError, match="no 'val' rows to augment"):
        write_augmented_set(train_only, tmp_path / "aug", ConventionalAugment(split="val"), 0)
    assert not (tmp_path / "aug").exists()


def test_a_set_without_splits_names_the_fix(tmp_path: Path) -> None:
    unsplit = one_class_set(tmp_path / "nosplit", split=None)
    with pytest.raises(ShardError, match="no split column"):
        write_augmented_set(unsplit, tmp_path / "aug", ConventionalAugment(), 0)
    assert not (tmp_path / "aug").exists()


def test_the_command_writes_the_set_and_refuses_an_unknown_class(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    real = labelled_set(tmp_path / "real")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}

    def synmed(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "suite", "data", "augment", *args],
                              capture_output=True, text=True, timeout=120, env=env)  # fmt: skip

    done = synmed(str(real), "--out", str(tmp_path / "aug"), "--classes", "a", "--copies", "2",
                  "--no-hflip", "--seed", "4")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "wrote 8 augmented copies of a" in done.stdout  # 4 train rows of a, twice
    attrs = ShardDataset(tmp_path / "aug").manifest.attrs["augment"]
    assert attrs["hflip"] is False and attrs["copies"] == 2 and attrs["seed"] == 4
    refused = synmed(str(real), "--out", str(tmp_path / "bad"), "--classes", "Shirt")
    assert refused.returncode == 2 and "augment.classes names ['Shirt']" in refused.stderr
    assert "Traceback" not in refused.stderr and not (tmp_path / "bad").exists()
