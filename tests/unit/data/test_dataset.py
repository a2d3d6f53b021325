"""ShardDataset: selection, digests, and DataLoader worker safety."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from suite.data.dataset import ShardDataset
from suite.errors import ShardError
from tests.unit.data.helpers import make_shard_set, pattern


def test_items_match_what_was_written(tmp_path: Path) -> None:
    make_shard_set(tmp_path, n=10, masks=True)
    data = ShardDataset(tmp_path)
    assert len(data) == 10
    for i in (0, 5, 9, -1):
        sample = data[i]
        want = i % 10
        assert sample["index"] == want and sample["label"] == want % 3
        assert sample["image"].dtype == torch.uint8
        np.testing.assert_array_equal(sample["image"].numpy(), pattern(want))
        np.testing.assert_array_equal(
            sample["mask"].numpy(), (pattern(want) > 128).astype(np.uint8)
        )


def test_filters(tmp_path: Path) -> None:
    make_shard_set(tmp_path, n=12)
    assert list(ShardDataset(tmp_path, split="val").indices) == [1, 4, 7, 10]
    assert list(ShardDataset(tmp_path, classes=["b"]).indices) == [1, 4, 7, 10]
    assert list(ShardDataset(tmp_path, classes=[0, "c"]).indices) == [0, 2, 3, 5, 6, 8, 9, 11]
    assert list(ShardDataset(tmp_path, index_range=(3, 6)).indices) == [3, 4, 5]
    both = ShardDataset(tmp_path, split="train", classes=["a"], index_range=(0, 10))
    assert list(both.indices) == [0, 3, 6, 9]
    with pytest.raises(ShardError, match="class 'zebra' is not in"):
        ShardDataset(tmp_path, classes=["zebra"])
    with pytest.raises(ShardError, match="unknown split"):
        ShardDataset(tmp_path, split="dev")
    with pytest.raises(ShardError, match="no cluster ids"):
        ShardDataset(tmp_path, clusters=[0])
    # accepted rows of an accepting `synmed sample` run: tests/unit/sampling/test_acceptance.py
    with pytest.raises(ShardError, match="has no accepted column") as err:
        ShardDataset(tmp_path, accepted_only=True)
    assert "synmed sample --accept" in err.value.fix


def test_multilabel_filter_and_labels(tmp_path: Path) -> None:
    make_shard_set(tmp_path, n=6, multilabel=True)
    data = ShardDataset(tmp_path)
    assert data[1]["label"].tolist() == [0.0, 1.0, 1.0]  # class 1, plus class 2 on odd rows
    assert list(ShardDataset(tmp_path, classes=["c"]).indices) == [1, 2, 5]


def test_digest_checked_before_use(tmp_path: Path) -> None:
    make_shard_set(tmp_path, n=8)
    path = tmp_path / "shard-00001.h5"
    blob = bytearray(path.read_bytes())
    blob[-10] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(ShardError, match="sha256 does not match"):
        ShardDataset(tmp_path)
    ShardDataset(tmp_path, verify="size")  # a caller may opt out of hashing
    path.unlink()
    with pytest.raises(ShardError, match="missing"):
        ShardDataset(tmp_path, verify="size")


def test_transform_sees_the_whole_sample(tmp_path: Path) -> None:
    make_shard_set(tmp_path, n=4, masks=True)

    def flip(sample: dict) -> dict:
        return {**sample, "image": sample["image"].flip(-1), "mask": sample["mask"].flip(-1)}

    data = ShardDataset(tmp_path, transform=flip)
    np.testing.assert_array_equal(data[2]["image"].numpy(), pattern(2)[..., ::-1])


def test_pickle_drops_open_handles(tmp_path: Path) -> None:
    make_shard_set(tmp_path, n=4)
    data = ShardDataset(tmp_path)
    _ = data[0]
    assert data._files
    clone = pickle.loads(pickle.dumps(data))
    assert clone._files == {}
    np.testing.assert_array_equal(clone[3]["image"].numpy(), pattern(3))


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_workers_read_every_row_once(tmp_path: Path, context: str) -> None:
    make_shard_set(tmp_path, n=40, shard_size=7)
    data = ShardDataset(tmp_path)
    _ = data[0]  # open a handle in the parent before forking: workers must not reuse it
    loader = DataLoader(
        data, batch_size=6, shuffle=True, num_workers=2, multiprocessing_context=context
    )
    seen = []
    for batch in loader:
        for idx, image in zip(batch["index"].tolist(), batch["image"]):
            np.testing.assert_array_equal(image.numpy(), pattern(idx))
            seen.append(idx)
    assert sorted(seen) == list(range(40))


def test_batched_read_keeps_request_order(tmp_path: Path) -> None:
    make_shard_set(tmp_path, n=20, shard_size=6)
    data = ShardDataset(tmp_path)
    order = [17, 3, 9, 0, 12, 5]
    assert [s["index"] for s in data.__getitems__(order)] == order


@pytest.mark.parametrize("multilabel", [False, True])
def test_a_batch_read_equals_the_collated_samples(tmp_path: Path, multilabel: bool) -> None:
    from torch.utils.data import default_collate

    make_shard_set(tmp_path, n=23, shard_size=5, masks=True, multilabel=multilabel)
    data = ShardDataset(tmp_path, split="train" if not multilabel else None)
    rng = np.random.default_rng(0)
    picks = [
        rng.permutation(len(data))[:7].tolist(),  # scattered over shards
        [2, 3, 4, 5, 6],  # one run crossing a shard boundary, in order
        [6, 5, 4, 3],  # a run written in reverse: read once, then scattered
        [0, -1, 1],  # negative positions, as __getitem__ takes them
    ]
    for positions in picks:
        got = data.read_batch(positions)
        want = default_collate(data.__getitems__(positions))
        assert got.keys() == want.keys()
        for key in want:
            assert got[key].dtype == want[key].dtype, key
            assert torch.equal(got[key], want[key]), (key, positions)


def test_batch_reads_through_workers_keep_the_samplers_order(tmp_path: Path) -> None:
    from torch.utils.data import BatchSampler, RandomSampler

    from suite.data.dataset import BatchReads

    make_shard_set(tmp_path, n=40, shard_size=8)
    data = ShardDataset(tmp_path)

    def sampler() -> BatchSampler:
        return BatchSampler(
            RandomSampler(data, generator=torch.Generator().manual_seed(3)), 6, drop_last=True
        )

    batched = DataLoader(BatchReads(data), sampler=sampler(), batch_size=None, num_workers=2)
    per_sample = DataLoader(data, batch_sampler=sampler(), num_workers=0)
    pairs = list(zip(batched, per_sample, strict=True))
    assert len(pairs) == 6
    for got, want in pairs:
        assert torch.equal(got["index"], want["index"]) and torch.equal(got["image"], want["image"])


def test_a_batch_read_refuses_a_per_sample_transform_and_an_empty_batch(tmp_path: Path) -> None:
    make_shard_set(tmp_path, n=6)
    with pytest.raises(ShardError, match="per-sample transform"):
        ShardDataset(tmp_path, transform=lambda s: s).read_batch([0, 1])
    with pytest.raises(ShardError, match="no positions"):
        ShardDataset(tmp_path).read_batch([])
