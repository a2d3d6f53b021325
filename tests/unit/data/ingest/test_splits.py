"""Split assignment: deterministic, group-preserving, close to the asked fractions."""

from __future__ import annotations

import numpy as np

from suite.data.ingest.splits import assign_splits, slab_groups, split_groups


def test_fractions_by_row_count() -> None:
    groups = [f"p{i}" for i in range(1000)]
    split = split_groups(groups, (0.8, 0.1, 0.1), seed=0)
    counts = np.bincount(split, minlength=3)
    assert abs(counts[0] - 800) <= 1 and abs(counts[1] - 100) <= 1 and abs(counts[2] - 100) <= 1


def test_groups_never_cut_and_stable_under_additions() -> None:
    rng = np.random.default_rng(0)
    groups = [f"patient{rng.integers(0, 150)}" for _ in range(800)]
    split = split_groups(groups, (0.7, 0.15, 0.15), seed=1)
    where: dict[str, set[int]] = {}
    for g, s in zip(groups, split):
        where.setdefault(g, set()).add(int(s))
    assert all(len(s) == 1 for s in where.values())
    again = split_groups(groups, (0.7, 0.15, 0.15), seed=1)
    np.testing.assert_array_equal(split, again)


def test_given_splits_kept_and_val_carved_from_train() -> None:
    given = ["train"] * 90 + ["test"] * 10
    groups = [f"g{i // 3}" for i in range(100)]
    split = assign_splits(given, groups, (0.8, 0.1, 0.1), seed=0)
    assert (split[90:] == 2).all()
    carved = split[:90]
    assert set(carved.tolist()) == {0, 1}
    assert 6 <= (carved == 1).sum() <= 15  # val's share of train+val is 1/9 -> ~10 rows
    for g in set(groups[:90]):
        assert len({int(split[i]) for i in range(90) if groups[i] == g}) == 1


def test_slabs_are_contiguous() -> None:
    positions = list(range(100))
    groups = slab_groups(["vol"] * 100, positions)
    assert len(set(groups)) == 10
    split = split_groups(groups, (0.8, 0.1, 0.1), seed=0)
    for s in range(3):  # each split is a union of runs of ten neighbouring slices
        rows = np.flatnonzero(split == s)
        assert len(rows) % 10 == 0 and all(
            r // 10 == rows[i - i % 10] // 10 for i, r in enumerate(rows)
        )
