"""Per-shard feature statistics on a real local Ray, merged, against one pass over all features.

The shard sets are real HDF5 shard sets written by the shard store (30 rows of 16 px images in
shards of 8, labelled a/b/c, splits train/val/test by row); the encoder is the seeded random
ResNet-18 at 32 px (the Inception-v3 path is the same code with another network).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from tests.conftest import need_module

need_module("ray", "a dependency of synmed-suite: bash scripts/setup.sh")

from suite.data.shards import read_manifest  # noqa: E402
from suite.evaluation.frechet import FeatureStats  # noqa: E402
from suite.evaluation.generator.stats import (  # noqa: E402
    StatsRequest,
    compute_set_stats,
    compute_stats,
    sample_positions,
)
from suite.features.encoders import build_encoder, resolve_encoder  # noqa: E402
from tests.unit.data.helpers import make_shard_set  # noqa: E402

pytestmark = [
    pytest.mark.ray,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context"),
]
ENCODER = "random:32"


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shard_set(tmp_path_factory.mktemp("sets") / "real", n=30, shard_size=8)


def read_columns(directory: Path) -> dict[str, np.ndarray]:
    """images, labels and split of every row, in manifest order."""
    cols: dict[str, list[np.ndarray]] = {"images": [], "labels": [], "split": []}
    for rec in read_manifest(directory).shards:
        with h5py.File(directory / rec.file) as h5:
            for key in cols:
                cols[key].append(h5[key][:])
    return {key: np.concatenate(parts) for key, parts in cols.items()}


def assert_same_stats(a: FeatureStats, b: FeatureStats, rtol: float) -> None:
    assert a.n == b.n
    np.testing.assert_allclose(a.total, b.total, rtol=rtol, atol=rtol * np.abs(b.total).max())
    np.testing.assert_allclose(a.outer, b.outer, rtol=rtol, atol=rtol * np.abs(b.outer).max())


def test_ray_per_shard_merge_equals_one_pass(ray_local, labelled: Path, tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    got = compute_set_stats(labelled, resolve_encoder(ENCODER), scratch, workers=2, batch_size=5)
    assert got.n == 30 and got.workers == 2 and 1 <= len(got.pids) <= 2
    assert got.sample is not None and got.sample.shape == (30, 512)
    np.testing.assert_array_equal(got.sample_rows, np.arange(30))
    # the merged per-shard sums are the one-pass sums over the same features (exact up to the
    # order of float64 additions)
    assert_same_stats(got.stats, FeatureStats.of(got.sample), rtol=1e-10)
    labels = read_columns(labelled)["labels"]
    assert len(got.class_stats) == 3
    for c, stats in enumerate(got.class_stats):
        assert stats.n == 10
        assert_same_stats(stats, FeatureStats.of(got.sample[labels == c]), rtol=1e-10)
    # and the features are the encoder's, computed here in this process
    encoder = build_encoder(ENCODER)
    with torch.inference_mode():
        ref = encoder(torch.from_numpy(read_columns(labelled)["images"])).numpy()
    np.testing.assert_allclose(got.sample, ref, rtol=1e-4, atol=1e-4)
    assert sorted(scratch.iterdir()) == []  # every per-shard file is deleted once merged


def test_split_filter_and_seeded_subsample(ray_local, labelled: Path, tmp_path: Path) -> None:
    # two requests in one actor pool, as the evaluation job runs its real and fake sets
    full, val = compute_stats(
        [
            StatsRequest(labelled, tmp_path / "a"),
            StatsRequest(labelled, tmp_path / "b", split="val", max_samples=4, seed=1),
        ],
        resolve_encoder(ENCODER),
    )
    in_val = read_columns(labelled)["split"] == 1
    assert val.n == int(in_val.sum()) == 10
    assert_same_stats(val.stats, FeatureStats.of(full.sample[in_val]), rtol=1e-6)
    rows = sample_positions(10, 4, 1)
    np.testing.assert_array_equal(val.sample_rows, rows)
    np.testing.assert_allclose(val.sample, full.sample[in_val][rows], rtol=1e-6, atol=1e-6)
    assert len(set(rows.tolist())) == 4 and list(rows) == sorted(rows)
