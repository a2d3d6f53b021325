"""The resumable sampler: disjoint rank shares, deterministic epochs, exact resume."""

from __future__ import annotations

import pytest

from suite.train.sampler import ResumableShardSampler


def test_ranks_disjoint_and_equal_sized() -> None:
    shares = [ResumableShardSampler(103, rank=r, world_size=4, seed=1) for r in range(4)]
    lists = [list(s) for s in shares]
    assert all(len(x) == 25 for x in lists)  # 103 // 4; the 3 left over are dropped this epoch
    flat = [i for x in lists for i in x]
    assert len(set(flat)) == 100 and set(flat) <= set(range(103))


def test_epochs_are_deterministic_and_differ() -> None:
    a = ResumableShardSampler(50, rank=0, world_size=1, seed=3)
    b = ResumableShardSampler(50, rank=0, world_size=1, seed=3)
    assert list(a) == list(b)
    a.set_epoch(1)
    assert list(a) != list(b) and sorted(a) == list(range(50))


def test_resume_continues_where_it_stopped() -> None:
    full = ResumableShardSampler(40, rank=1, world_size=2, seed=0)
    full.set_epoch(2)
    resumed = ResumableShardSampler(40, rank=1, world_size=2, seed=0)
    resumed.set_epoch(2, position=8)
    assert list(resumed) == list(full)[8:] and len(resumed) == 12


def test_too_small_for_world() -> None:
    with pytest.raises(ValueError, match="cannot be shared"):
        ResumableShardSampler(1, rank=0, world_size=2, seed=0)
