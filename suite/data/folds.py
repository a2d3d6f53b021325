"""K-fold cross-validation by group (patient, volume or slab): the one fold assignment.

:func:`fold_splits` is a pure function of the rows' groups, K, the fold, the validation share and
a seed, so that ``synmed evaluate segment`` with ``data.folds=K`` and the per-fold sets of
``synmed data folds`` (on which a generator is trained per fold) cut the data the same way. It
follows seed 002 (DiffBoost: scikit-learn ``KFold(n_splits=3)`` without shuffling over cases): the
sorted unique groups are split by ``KFold(n_splits=K)`` (shuffled with ``shuffle_seed`` when one is
given); fold k's groups are its test split. The seed selected its model on that test split; here
``val_fraction`` of the other groups (at least one) form a validation split for model selection,
drawn with ``shuffle_seed`` (0 when None), and the rest train.

:func:`write_fold_sets` writes ``OUT/fold0 .. fold{K-1}``: each the source set's rows, shards and
``index`` values with only the ``split`` column re-assigned for that fold.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

import suite
from suite.artifacts.digests import sha256_file
from suite.artifacts.files import atomic_write_text
from suite.data.shards import (
    MANIFEST,
    SPLITS,
    STRING_DATASETS,
    read_manifest,
    write_manifest,
    write_shard,
)
from suite.data.verify import verify_shard_set
from suite.data.writer import staged_output
from suite.errors import ConfigError, DataError

FOLDS_FILE = "folds.json"  # OUT/folds.json: the assignment, per fold and split


def fold_name(fold: int) -> str:
    return f"fold{fold}"


def check_fold_settings(folds: int, val_fraction: float, where: str = "--folds") -> None:
    """K of at least 2 and a validation share in (0, 1); one ConfigError each."""
    if folds < 2:
        raise ConfigError(
            f"{where} {folds}: cross-validation needs at least 2 folds",
            f"pass {where} 3 (seed 002)",
        )
    if not 0 < val_fraction < 1:
        raise ConfigError(
            f"validation fraction {val_fraction} is not between 0 and 1 (exclusive)",
            "pass e.g. 0.2: a fifth of the non-test groups select the model",
        )


def fold_groups(
    groups: Sequence[str],
    folds: int,
    fold: int,
    val_fraction: float,
    shuffle_seed: int | None = None,
    *,
    source: str = "the set",
) -> dict[str, list[str]]:
    """``{"train": [...], "val": [...], "test": [...]}``: the sorted group ids of each split."""
    check_fold_settings(folds, val_fraction)
    if not 0 <= fold < folds:
        raise ConfigError(f"fold {fold} is not in 0..{folds - 1}", f"pass a fold below {folds}")
    from sklearn.model_selection import KFold

    unique = np.array(sorted({str(g) for g in groups}), dtype=object)
    # every fold's non-test part (all but at most ceil(n / K) groups) needs a val and a train group
    if len(unique) < folds or len(unique) - -(-len(unique) // folds) < 2:
        raise DataError(
            f"{source} has {len(unique)} group(s) ({', '.join(map(str, unique[:5]))}), too few "
            f"for {folds} folds with a validation split (each fold needs a test, a val and a "
            "train group)",
            "use fewer folds (--folds 3 needs 3 groups or more), or ingest more volumes or "
            "patients (a single volume is ingested as slab groups)",
        )
    kfold = KFold(n_splits=folds, shuffle=shuffle_seed is not None, random_state=shuffle_seed)
    rest, test = list(kfold.split(unique))[fold]
    n_val = min(max(1, round(val_fraction * len(rest))), len(rest) - 1)
    rng = np.random.default_rng(0 if shuffle_seed is None else shuffle_seed)
    val = rng.choice(rest, size=n_val, replace=False)
    train = np.setdiff1d(rest, val)
    return {
        "train": sorted(unique[train].tolist()),
        "val": sorted(unique[val].tolist()),
        "test": sorted(unique[test].tolist()),
    }


def fold_splits(
    groups: Sequence[str],
    folds: int,
    fold: int,
    val_fraction: float,
    shuffle_seed: int | None = None,
    *,
    source: str = "the set",
) -> np.ndarray:
    """Split ids (0 train, 1 val, 2 test, as the shard store's ``split``) of every row for ``fold``."""
    chosen = fold_groups(groups, folds, fold, val_fraction, shuffle_seed, source=source)
    split_of = {g: SPLITS.index(name) for name, ids in chosen.items() for g in ids}
    return np.array([split_of[str(g)] for g in groups], dtype=np.uint8)


def read_groups(directory: Path) -> np.ndarray:
    """The ``group`` column of every row of a set, in shard order; one DataError if it has none."""
    manifest = read_manifest(directory)
    parts = []
    for rec in manifest.shards:
        with h5py.File(directory / rec.file, "r") as h5:
            if "group" not in h5:
                raise DataError(
                    f"{directory} has no group column: folds keep each volume or patient whole, "
                    "and this set does not say which rows belong together",
                    "ingest it with synmed data ingest (NIfTI and DICOM sets record their "
                    "volume, patient or slab as the group)",
                )
            parts.append(h5["group"].asstr()[:])
    return np.concatenate(parts) if parts else np.zeros(0, dtype=object)


def write_fold_sets(
    source: Path,
    out: Path,
    *,
    folds: int,
    val_fraction: float = 0.2,
    shuffle_seed: int | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write ``out/fold{k}`` for every fold and ``out/folds.json``; returns the folds.json body."""
    source, out = Path(source), Path(out)
    check_fold_settings(folds, val_fraction)
    verify_shard_set(source)
    manifest = read_manifest(source)
    groups = read_groups(source)
    assignments = [
        fold_groups(groups, folds, k, val_fraction, shuffle_seed, source=str(source))
        for k in range(folds)
    ]
    splits = [fold_splits(groups, folds, k, val_fraction, shuffle_seed) for k in range(folds)]
    digest = sha256_file(source / MANIFEST)
    body: dict[str, Any] = {
        "source": str(source.resolve()),
        "manifest_sha256": digest,
        "folds": folds,
        "val_fraction": val_fraction,
        "shuffle_seed": shuffle_seed,
        "assignment": "sklearn KFold over sorted unique groups (suite/data/folds.py)",
        "per_fold": [
            {
                name: {"count": int((split == i).sum()), "group_ids": assignment[name]}
                for i, name in enumerate(SPLITS)
            }
            for split, assignment in zip(splits, assignments)
        ],
    }
    with staged_output(out, overwrite=overwrite, inputs=[source]) as staging:
        for k, split in enumerate(splits):
            attrs = {
                **manifest.attrs,
                "fold_of": {"path": str(source.resolve()), "manifest_sha256": digest},
                "fold": k,
                "folds": folds,
                "fold_val_fraction": val_fraction,
                "synmed_version": suite.__version__,
            }
            if shuffle_seed is not None:  # HDF5 attributes hold no None
                attrs["fold_shuffle_seed"] = shuffle_seed
            folder = staging / fold_name(k)
            folder.mkdir()
            records, start = [], 0
            for number, rec in enumerate(manifest.shards):
                with h5py.File(source / rec.file, "r") as h5:
                    arrays = {
                        key: h5[key].asstr()[:] if key in STRING_DATASETS else h5[key][:]
                        for key in h5
                    }
                arrays["split"] = split[start : start + rec.count]
                start += rec.count
                records.append(write_shard(folder, number, arrays, attrs))
            write_manifest(folder, records, attrs)
        atomic_write_text(staging / FOLDS_FILE, json.dumps(body, indent=1))
    return body
