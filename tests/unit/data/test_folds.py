"""K-fold assignment by group, and `synmed data folds` writing one shard set per fold."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from sklearn.model_selection import KFold

from suite.cli import main as synmed_main
from suite.data.dataset import ShardDataset
from suite.data.folds import FOLDS_FILE, fold_groups, fold_splits, write_fold_sets
from suite.errors import ConfigError, DataError
from tests.unit.data.helpers import make_shard_set, make_volume_set


def test_folds_follow_kfold_over_sorted_groups_and_cover_every_group_once() -> None:
    groups = [f"g{i % 9}" for i in range(27)][::-1]
    unique = sorted(set(groups))
    tests = []
    for k, (_, test) in enumerate(KFold(n_splits=3).split(unique)):
        chosen = fold_groups(groups, 3, k, 0.2)
        assert chosen["test"] == [unique[i] for i in test]  # seed 002: KFold(3), no shuffle
        assert len(chosen["val"]) == 1 and len(chosen["train"]) == 5  # round(0.2 * 6) = 1
        assert not set(chosen["val"]) & set(chosen["train"])
        tests += chosen["test"]
        split = fold_splits(groups, 3, k, 0.2)
        for g, s in zip(groups, split):
            assert (g in chosen["test"]) == (s == 2) and (g in chosen["val"]) == (s == 1)
    assert sorted(tests) == unique
    assert np.array_equal(fold_splits(groups, 3, 1, 0.2), fold_splits(groups, 3, 1, 0.2))
    shuffled = [fold_groups(groups, 3, k, 0.2, shuffle_seed=5)["test"] for k in range(3)]
    assert sorted(sum(shuffled, [])) == unique


def test_too_few_groups_or_bad_settings_are_one_error_each() -> None:
    with pytest.raises(DataError, match="has 2 group"):
        fold_splits(["a", "a", "b"], 3, 0, 0.2)
    with pytest.raises(DataError, match="too few for 2 folds"):
        fold_splits(["a", "b", "c"], 2, 0, 0.2)  # fold 0's rest would be one group
    with pytest.raises(ConfigError, match="at least 2 folds"):
        fold_splits(["a", "b", "c"], 1, 0, 0.2)
    with pytest.raises(ConfigError, match="validation fraction 0"):
        fold_splits(["a", "b", "c"], 3, 0, 0.0)


def test_fold_sets_keep_rows_and_indices_and_reassign_splits(tmp_path: Path) -> None:
    source = make_volume_set(tmp_path / "vols")
    out = tmp_path / "folds"
    body = write_fold_sets(source, out, folds=3, val_fraction=0.25)
    original = ShardDataset(source)
    groups = original.read_column("group")
    assert json.loads((out / FOLDS_FILE).read_text()) == body
    for k in range(3):
        fold = ShardDataset(out / f"fold{k}")
        assert np.array_equal(fold.indices, original.indices)
        assert np.array_equal(fold.read_column("group"), groups)
        assert np.array_equal(fold.read_column("split"), fold_splits(groups, 3, k, 0.25))
        assert all(torch_equal(fold[i], original[i]) for i in range(len(fold)))
        attrs = fold.manifest.attrs
        assert attrs["fold"] == k and attrs["folds"] == 3 and attrs["fold_val_fraction"] == 0.25
        assert attrs["fold_of"]["manifest_sha256"] == body["manifest_sha256"]
        assert attrs["mask_names"] == ["background", "blob"]
        test_ids = body["per_fold"][k]["test"]["group_ids"]
        assert len(ShardDataset(out / f"fold{k}", split="test")) == 2 * len(test_ids)
    with h5py.File(source / "shard-00000.h5") as h5:  # the input is untouched
        assert h5["split"][:].tolist() == [int(i % 3) for i in h5["index"][:]]


def torch_equal(a: dict, b: dict) -> bool:
    return (
        all(
            (a[k] == b[k]).all() if hasattr(a[k], "shape") else a[k] == b[k]
            for k in ("image", "mask")
        )
        and a["index"] == b["index"]
    )


def test_cli_refuses_a_set_without_groups_and_leaves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = make_shard_set(tmp_path / "plain", n=9, masks=True)
    out = tmp_path / "folds"
    assert synmed_main(["data", "folds", str(plain), "--folds", "3", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "has no group column" in err and str(plain) in err and "fix:" in err
    assert not out.exists() and not list(tmp_path.glob(".folds.staging-*"))
    vols = make_volume_set(tmp_path / "vols", volumes=2)
    assert synmed_main(["data", "folds", str(vols), "--folds", "3", "--out", str(out)]) == 2
    assert "has 2 group(s)" in capsys.readouterr().err and not out.exists()
    assert synmed_main(["data", "folds", str(vols), "--folds", "2", "--out", str(out)]) == 2
    assert "too few for 2 folds" in capsys.readouterr().err and not out.exists()


def test_cli_writes_the_folds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vols = make_volume_set(tmp_path / "vols")
    out = tmp_path / "folds"
    assert synmed_main(["data", "folds", str(vols), "--folds", "3", "--out", str(out)]) == 0
    assert "fold2: train" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["fold0", "fold1", "fold2"]
    assert synmed_main(["data", "verify", str(out / "fold1")]) == 0  # digests, counts, schema
    # a second run into the same folder is refused unless --overwrite, which replaces it whole
    assert synmed_main(["data", "folds", str(vols), "--folds", "3", "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    args = ["data", "folds", str(vols), "--folds", "2", "--out", str(out), "--overwrite"]
    assert synmed_main(args) == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["fold0", "fold1"]
