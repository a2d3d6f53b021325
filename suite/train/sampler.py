"""A resumable, rank-sharded sampler: the data position is part of the run state.

Every epoch is a permutation drawn from (seed, epoch) alone, cut so that every rank gets the same
number of samples, and dealt out rank-strided. Resuming sets (epoch, position) and the sampler
continues exactly where the interrupted run stopped, without iterating through what was consumed.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class ResumableShardSampler(Sampler[int]):
    """Indices of one rank's share of an epoch, starting at ``position`` (samples, not batches).

    Args:
        size: Dataset length.
        rank: This process's rank.
        world_size: Number of processes.
        seed: Base seed; the epoch's permutation is seeded by ``seed * 1_000_003 + epoch``.
        shuffle: Permute each epoch (else in order).
    """

    def __init__(
        self, size: int, *, rank: int, world_size: int, seed: int, shuffle: bool = True
    ) -> None:
        if size < world_size:
            raise ValueError(f"{size} samples cannot be shared by {world_size} ranks")
        self.size = size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self.position = 0

    @property
    def per_rank(self) -> int:
        return self.size // self.world_size  # the tail that does not divide evenly is left out

    def set_epoch(self, epoch: int, position: int = 0) -> None:
        self.epoch = epoch
        self.position = position

    def epoch_indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.size, generator=g)
        else:
            order = torch.arange(self.size)
        share = order[: self.per_rank * self.world_size][self.rank :: self.world_size]
        return share.tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_indices()[self.position :])

    def __len__(self) -> int:
        return self.per_rank - self.position
