"""Deterministic train/val/test assignment that never cuts a patient or a volume slab in two.

Every decision comes from sha256(seed, key), so the same source and seed give the same split on any
machine, and adding new patients does not move old ones.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from suite.artifacts.digests import sha256_text
from suite.data.shards import SPLITS

SLABS_PER_VOLUME = 10


def _rank(seed: int, key: str) -> str:
    return sha256_text(f"{seed}:{key}")


def split_groups(
    groups: Sequence[str], fractions: Sequence[float], seed: int, names: Sequence[str] = SPLITS
) -> np.ndarray:
    """Assign each row a split id by its group, hitting the fractions by row count.

    Groups are taken in hashed order and filled into the splits in turn, so the row counts land as
    close to ``fractions`` as whole groups allow.
    """
    sizes: dict[str, int] = defaultdict(int)
    for g in groups:
        sizes[g] += 1
    total = len(groups)
    fracs = np.asarray(fractions, dtype=float)
    bounds = np.cumsum(fracs / fracs.sum()) * total
    which: dict[str, int] = {}
    seen = 0
    for g in sorted(sizes, key=lambda g: _rank(seed, g)):
        # a group goes where its middle row falls, so no split is systematically short-changed
        middle = seen + sizes[g] / 2
        which[g] = int(min(np.searchsorted(bounds, middle, side="right"), len(fracs) - 1))
        seen += sizes[g]
    ids = np.array([which[g] for g in groups], dtype=np.uint8)
    return np.array([SPLITS.index(names[i]) for i in ids], dtype=np.uint8)


def slab_groups(volumes: Sequence[str], positions: Sequence[float]) -> list[str]:
    """Group slices of each volume into contiguous slabs, so neighbours share a split."""
    by_volume: dict[str, list[float]] = defaultdict(list)
    for v, p in zip(volumes, positions, strict=True):
        by_volume[v].append(p)
    edges = {}
    for v, ps in by_volume.items():
        edges[v] = np.quantile(np.asarray(ps), np.linspace(0, 1, SLABS_PER_VOLUME + 1)[1:-1])
    return [
        f"{v}#slab{int(np.searchsorted(edges[v], p, side='right'))}"
        for v, p in zip(volumes, positions)
    ]


def assign_splits(
    given: Sequence[str | None],
    groups: Sequence[str],
    fractions: Sequence[float],
    seed: int,
) -> np.ndarray:
    """Split ids (0 train, 1 val, 2 test) for every row.

    Rows whose source gives a split keep it. Rows without one are split by group over all three
    splits. When the source gives train and test but no val (NIH lists, IDX, some MedMNIST copies),
    val is carved out of train by group, at val's share of train+val.
    """
    out = np.zeros(len(groups), dtype=np.uint8)
    free = [i for i, s in enumerate(given) if s is None]
    if free:
        out[free] = split_groups([groups[i] for i in free], fractions, seed)
    fixed = [i for i, s in enumerate(given) if s is not None]
    for i in fixed:
        if given[i] not in SPLITS:
            raise ValueError(f"unknown split {given[i]!r}; expected one of {SPLITS}")
        out[i] = SPLITS.index(given[i])  # type: ignore[arg-type]
    has_val = any(given[i] == "val" for i in fixed)
    train = [i for i in fixed if given[i] == "train"]
    if fixed and not has_val and train and fractions[1] > 0:
        share = fractions[1] / (fractions[0] + fractions[1])
        carved = split_groups(
            [groups[i] for i in train], (1 - share, share), seed, ("train", "val")
        )
        out[train] = carved
    return out


def split_quotas(counts: list[int], limit: int | None) -> list[int]:
    """Rows to read per split under ``limit``, in proportion to split size.

    Reading the first ``limit`` rows in file order would give a quick look with no test split.
    """
    total = sum(counts)
    if limit is None or limit >= total:
        return list(counts)
    quotas = [n * limit // total for n in counts]
    by_remainder = sorted(range(len(counts)), key=lambda i: -(counts[i] * limit % total))
    for i in by_remainder[: limit - sum(quotas)]:
        quotas[i] += 1
    return quotas
