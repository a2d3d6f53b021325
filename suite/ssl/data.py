"""Pretraining data: named shard sets mixed in given proportions, read as seeded multi-view samples."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from suite.artifacts.digests import sha256_file, sha256_text
from suite.data.dataset import ShardDataset
from suite.data.shards import MANIFEST, read_manifest
from suite.data.transforms import sample_seed
from suite.errors import ConfigError, DataError

Sample = dict[str, Any]


def parse_mix(mix: str, sources: dict[str, str]) -> dict[str, float]:
    """``"real:0.5,synthetic:0.5"`` -> proportions summing to 1. A bare name weighs 1, so
    ``"real"`` is all real and ``"real,synthetic"`` is half and half."""
    fix = (
        f"set pretrain.mix to names from pretrain.sources ({', '.join(sources) or 'none set'}), "
        "e.g. real:0.5,synthetic:0.5"
    )
    if not sources:
        raise ConfigError("pretrain.sources is empty", "name shard sets: pretrain.sources.real=DIR")
    if not mix.strip():
        if len(sources) == 1:
            return {next(iter(sources)): 1.0}
        raise ConfigError(f"pretrain.mix is empty and there are {len(sources)} sources", fix)
    weights: dict[str, float] = {}
    for part in mix.split(","):
        name, _, value = part.strip().partition(":")
        if name not in sources:
            raise ConfigError(f"pretrain.mix names {name!r}, which is not a source", fix)
        try:
            weight = float(value) if value else 1.0
        except ValueError:
            raise ConfigError(f"pretrain.mix: {value!r} is not a number", fix) from None
        if weight < 0 or name in weights:
            raise ConfigError(f"pretrain.mix: {part!r} is negative or repeated", fix)
        if weight > 0:
            weights[name] = weight
    total = sum(weights.values())
    if total <= 0:
        raise ConfigError(f"pretrain.mix {mix!r} gives no source a positive share", fix)
    return {name: w / total for name, w in weights.items()}


class MixedShardDataset(Dataset[Sample]):
    """Several shard sets read as one, each taking its share of every epoch.

    The epoch length is the chosen sources' total size, or ``length`` when given (so runs on
    sources of different sizes take the same number of steps). Source ``i`` fills
    ``round(p_i * length)`` positions with its rows: a permutation of them, repeated (sampling
    with replacement) when the share is larger than the source, a subset when smaller. The table
    is a pure function of (seed, epoch), so a resumed run and every rank build the same one.

    Args:
        sources: name -> shard set folder.
        proportions: name -> share (from :func:`parse_mix`).
        split: rows of each set to read (sets without a split column, e.g. sampled ones, are
            read whole).
        transform: applied to each sample (with ``source`` and ``index`` filled in).
        seed: base seed of the tables.
        verify: the shard check ("sha256" or "size").
        length: samples per epoch; None: the sources' total size.
    """

    def __init__(
        self,
        sources: dict[str, str | Path],
        proportions: dict[str, float],
        *,
        split: str | None = "train",
        transform: Callable[[Sample], Sample] | None = None,
        seed: int = 0,
        verify: str = "sha256",
        length: int | None = None,
    ) -> None:
        self.names = list(proportions)
        self.proportions = proportions
        self.sets: list[ShardDataset] = []
        for name in self.names:
            path = Path(sources[name])
            if not (path / MANIFEST).is_file():
                raise DataError(
                    f"pretrain source {name!r}: {path} is not a shard set (no {MANIFEST})",
                    f"ingest or sample into {path} first, or fix pretrain.sources.{name}",
                )
            # A set without splits (a sampled one) holds nothing back: all of it is read.
            has_splits = bool(read_manifest(path).split_counts())
            data = ShardDataset(path, split=split if has_splits else None, verify=verify)  # type: ignore[arg-type]
            if len(data) == 0:
                raise DataError(
                    f"pretrain source {name!r}: {path} has no images in split {split!r}",
                    "choose another pretrain.split, or check the shard set with synmed data info",
                )
            self.sets.append(data)
        shapes = {name: tuple(d[0]["image"].shape) for name, d in zip(self.names, self.sets)}
        if len({s[0] for s in shapes.values()}) > 1:
            raise DataError(
                f"pretrain sources have different channel counts: {shapes}",
                "re-ingest them with the same --channels",
            )
        self.channels = next(iter(shapes.values()))[0]
        self.digests = {name: sha256_file(Path(sources[name]) / MANIFEST) for name in self.names}
        self.length = length if length is not None else sum(len(d) for d in self.sets)
        counts = [round(proportions[n] * self.length) for n in self.names]
        counts[-1] = self.length - sum(counts[:-1])  # rounding: the total is exact
        self.counts = dict(zip(self.names, counts))
        self.transform = transform
        self.seed = seed
        self.set_epoch(0)

    @property
    def digest(self) -> str:
        """One digest of the sources' manifests and the mix (what a resume must match)."""
        text = ";".join(f"{n}={self.proportions[n]:.6f}:{self.digests[n]}" for n in self.names)
        return sha256_text(text)

    def set_epoch(self, epoch: int) -> None:
        source_ids, rows = [], []
        for i, (data, count) in enumerate(zip(self.sets, self.counts.values())):
            g = torch.Generator().manual_seed(sample_seed(self.seed, epoch, i))
            repeats = -(-count // len(data))  # ceil
            order = torch.cat([torch.randperm(len(data), generator=g) for _ in range(repeats)])
            rows.append(order[:count].numpy())
            source_ids.append(np.full(count, i, dtype=np.int32))
        self._source = np.concatenate(source_ids)
        self._row = np.concatenate(rows)
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, position: int) -> Sample:
        source, row = int(self._source[position]), int(self._row[position])
        read = self.sets[source][row]
        # Labels are left out: SSL does not use them, and mixed sets need not share a label kind.
        sample = {
            "image": read["image"],
            "source": source,
            "index": position,
            "row_index": read["index"],
        }
        if self.transform is not None:
            sample = self.transform(sample)
        return sample

    def __getitems__(self, positions: list[int]) -> list[Sample]:
        return [self[p] for p in positions]
