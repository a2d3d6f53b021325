"""Mixed sources and seeded views: what pretraining reads is a pure function of (seed, epoch)."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from suite.errors import ConfigError, DataError
from suite.ssl.data import MixedShardDataset, parse_mix
from suite.ssl.views import SeededViews, to_pil
from tests.unit.data.helpers import make_shard_set

SOURCES = {"real": "r", "synthetic": "s"}


def test_parse_mix() -> None:
    assert parse_mix("real:0.25,synthetic:0.75", SOURCES) == {"real": 0.25, "synthetic": 0.75}
    assert parse_mix("real", SOURCES) == {"real": 1.0}
    assert parse_mix("real,synthetic", SOURCES) == {"real": 0.5, "synthetic": 0.5}
    assert parse_mix("real:2,synthetic:0", SOURCES) == {"real": 1.0}
    assert parse_mix("", {"real": "r"}) == {"real": 1.0}
    for bad, match in [
        ("xray:1", "not a source"),
        ("real:abc", "not a number"),
        ("real:-1", "negative"),
        ("real:0", "no source"),
        ("", "mix is empty"),
    ]:
        with pytest.raises(ConfigError, match=match):
            parse_mix(bad, SOURCES)
    with pytest.raises(ConfigError, match="sources is empty"):
        parse_mix("real", {})


@pytest.fixture
def two_sets(tmp_path: Path) -> dict[str, str]:
    real = make_shard_set(tmp_path / "real", 30, size=8)
    synthetic = make_shard_set(tmp_path / "syn", 6, size=8, source="synthetic")
    return {"real": str(real), "synthetic": str(synthetic)}


def test_each_source_fills_its_share_and_the_table_depends_on_seed_and_epoch(
    two_sets: dict[str, str],
) -> None:
    mix = {"real": 0.5, "synthetic": 0.5}
    data = MixedShardDataset(two_sets, mix, split=None, seed=3)
    assert len(data) == 36
    counts = Counter(data[i]["source"] for i in range(len(data)))
    assert counts == {0: 18, 1: 18}  # the 6 synthetic images are repeated to fill half
    synthetic_rows = Counter(data[i]["row_index"] for i in range(len(data)) if data[i]["source"])
    assert set(synthetic_rows) == set(range(6)) and set(synthetic_rows.values()) == {3}
    again = MixedShardDataset(two_sets, mix, split=None, seed=3, verify="size")
    assert [again[i]["row_index"] for i in range(36)] == [data[i]["row_index"] for i in range(36)]
    before = [data[i]["row_index"] for i in range(36)]
    data.set_epoch(1)
    assert [data[i]["row_index"] for i in range(36)] != before
    assert data.digest == again.digest
    other = MixedShardDataset(two_sets, {"real": 1.0}, split=None, seed=3)
    assert other.digest != data.digest and len(other) == 30


def test_epoch_size_fixes_the_epoch_whatever_the_sources_hold(two_sets: dict[str, str]) -> None:
    synthetic_only = MixedShardDataset(two_sets, {"synthetic": 1.0}, split=None, length=30)
    assert len(synthetic_only) == 30  # 6 images, each drawn 5 times: the steps of the 30 real ones
    rows = Counter(synthetic_only[i]["row_index"] for i in range(30))
    assert rows == {row: 5 for row in range(6)}
    halves = MixedShardDataset(two_sets, {"real": 0.5, "synthetic": 0.5}, split=None, length=10)
    assert Counter(halves[i]["source"] for i in range(10)) == {0: 5, 1: 5}


def test_sources_must_be_shard_sets_with_rows(tmp_path: Path, two_sets: dict[str, str]) -> None:
    with pytest.raises(DataError, match="not a shard set"):
        MixedShardDataset({"real": str(tmp_path / "nope")}, {"real": 1.0})
    empty = make_shard_set(tmp_path / "two", 2, size=8)  # rows 0, 1: splits train, val
    with pytest.raises(DataError, match="no images in split 'test'"):
        MixedShardDataset({"real": str(empty)}, {"real": 1.0}, split="test")


def test_seeded_views_are_a_function_of_the_sample_and_leave_global_rngs_alone() -> None:
    from lightly.transforms import DINOTransform

    transform = DINOTransform(
        global_crop_size=16,
        local_crop_size=8,
        n_local_views=2,
        normalize={"mean": [0.5], "std": [0.5]},
    )
    views = SeededViews(transform, channels=1, seed=0)
    sample = {"image": torch.randint(0, 256, (1, 16, 16), dtype=torch.uint8), "source": 0,
              "row_index": 5, "index": 9}  # fmt: skip
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    state = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    first = views(sample)["views"]
    assert torch.equal(torch.get_rng_state(), state[0])
    assert np.array_equal(np.random.get_state()[1], state[1]) and random.getstate() == state[2]
    assert [v.shape for v in first] == [(1, 16, 16)] * 2 + [(1, 8, 8)] * 2
    second = views(sample)["views"]
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    views.epoch = 1
    assert not all(torch.equal(a, b) for a, b in zip(first, views(sample)["views"]))


def test_to_pil_converts_channels() -> None:
    grey = torch.zeros(1, 4, 4, dtype=torch.uint8)
    assert to_pil(grey, 3).mode == "RGB" and to_pil(grey, 1).mode == "L"
    assert to_pil(torch.zeros(3, 4, 4, dtype=torch.uint8), 1).mode == "L"
