"""k-means, representatives and stats on synthetic features; the cluster command's checks.

The features are built so the truth is known: well separated directions (cosine geometry) with
the rows nearest each centroid placed at the *end* of the file, so seed 004's bug (the first N rows
as "representatives") would fail here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from suite.errors import DataError, ShardError
from suite.features.cluster import Clustering, cluster_features, l2_normalize, plot_embedding

K = 4
D = 32
PER = 60


def separable(seed: int = 0, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """``K`` groups around orthogonal directions, rows shuffled; returns (features, truth)."""
    rng = np.random.default_rng(seed)
    directions = np.eye(D, dtype=np.float32)[:K] * 5
    truth = np.repeat(np.arange(K), PER)
    features = directions[truth] + rng.normal(0, 0.6, (K * PER, D)).astype(np.float32)
    # the norm varies a lot per row: clustering must not care (cosine geometry)
    features *= rng.uniform(0.2, 5.0, (K * PER, 1)).astype(np.float32) * scale
    order = rng.permutation(K * PER)
    return features[order], truth[order]


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to relabelling: a one-to-one mapping of ids."""
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_kmeans_recovers_separable_groups() -> None:
    features, truth = separable()
    result = cluster_features(features, K, seed=0, representatives=5)
    assert result.algorithm == "kmeans"
    assert result.labels.dtype == np.int32 and result.labels.shape == truth.shape
    assert same_partition(result.labels, truth)
    assert sorted(result.sizes) == [PER] * K
    np.testing.assert_allclose(np.linalg.norm(result.centroids, axis=1), 1.0, rtol=1e-5)


def test_same_seed_same_clusters_and_scale_invariance() -> None:
    features, _ = separable(seed=3)
    a = cluster_features(features, K, seed=7)
    b = cluster_features(features, K, seed=7)
    np.testing.assert_array_equal(a.labels, b.labels)
    # cosine geometry: rescaling every row changes nothing
    c = cluster_features(features * 100.0, K, seed=7)
    assert same_partition(a.labels, c.labels)


def test_representatives_are_the_nearest_by_cosine_not_the_first_rows() -> None:
    features, truth = separable(seed=1)
    n = len(features)
    # make 3 rows per group almost exactly the group direction and put them last in the file
    rng = np.random.default_rng(0)
    exact = np.repeat(np.eye(D, dtype=np.float32)[:K], 3, axis=0) * rng.uniform(0.1, 9, (3 * K, 1))
    features = np.concatenate([features, exact.astype(np.float32)])
    truth = np.concatenate([truth, np.repeat(np.arange(K), 3)])
    index = np.arange(len(features), dtype=np.int64) + 1000  # global indices != row positions
    result = cluster_features(features, K, seed=0, representatives=5, index=index)
    x = l2_normalize(features)
    for stats in result.stats:
        members = np.flatnonzero(result.labels == stats.id)
        cos = x[members] @ result.centroids[stats.id]
        expected = members[np.argsort(-cos, kind="stable")[:5]]
        assert stats.representative_rows == expected.tolist()
        assert stats.representatives == (expected + 1000).tolist()
        # the 3 planted rows (at the end of the file) lead the list
        assert set(stats.representative_rows[:3]) <= set(range(n, n + 3 * K))
        assert stats.representative_rows != members[:5].tolist()  # seed 004's bug
        sims = stats.representative_cosine
        assert sims == sorted(sims, reverse=True)
        np.testing.assert_allclose(
            sims, x[stats.representative_rows] @ result.centroids[stats.id], rtol=1e-5
        )
        assert all(result.labels[r] == stats.id for r in stats.representative_rows)


def test_stats_match_a_direct_computation() -> None:
    features, _ = separable(seed=2)
    result = cluster_features(features, K, seed=0, representatives=6)
    x = l2_normalize(features)
    centroids = l2_normalize(
        np.stack([x[result.labels == c].mean(axis=0) for c in range(K)])
    )  # Lloyd's fixed point: each centroid is the mean of its members
    np.testing.assert_allclose(result.centroids, centroids, atol=1e-4)
    for stats in result.stats:
        members = result.labels == stats.id
        cos = x[members] @ result.centroids[stats.id]
        assert stats.size == int(members.sum())
        assert stats.mean_cosine == pytest.approx(float(cos.mean()), abs=1e-5)
        assert stats.min_cosine == pytest.approx(float(cos.min()), abs=1e-5)
        assert stats.std_cosine == pytest.approx(float(cos.std()), abs=1e-5)
        reps = x[stats.representative_rows]
        gram = reps @ reps.T
        upper = gram[np.triu_indices(len(reps), 1)]
        assert stats.representative_pairwise_mean == pytest.approx(float(upper.mean()), abs=1e-5)
        assert stats.representative_pairwise_std == pytest.approx(float(upper.std()), abs=1e-5)
    assert sum(result.sizes) == len(features)
    np.testing.assert_allclose(
        result.similarity, np.sum(x * result.centroids[result.labels], axis=1), atol=1e-5
    )


def test_minibatch_path_above_the_memory_budget() -> None:
    features, truth = separable(seed=4)
    budget_gb = features.nbytes / 2 / 1024**3  # half the matrix: too big for full KMeans
    result = cluster_features(features, K, seed=0, memory_budget_gb=budget_gb)
    assert result.algorithm == "minibatch_kmeans"
    assert same_partition(result.labels, truth)
    assert sum(result.sizes) == len(features)


def test_bad_k_and_representatives_are_clear_errors() -> None:
    features, _ = separable()
    with pytest.raises(DataError, match="k = 0"):
        cluster_features(features, 0)
    with pytest.raises(DataError, match=f"k = {len(features) + 1}"):
        cluster_features(features, len(features) + 1)
    with pytest.raises(DataError, match="representatives"):
        cluster_features(features, 2, representatives=0)


def test_fewer_members_than_representatives() -> None:
    features = np.array([[1, 0], [0.9, 0.1], [0, 1]], dtype=np.float32)
    result = cluster_features(features, 2, seed=0, representatives=5)
    assert sorted(len(s.representative_rows) for s in result.stats) == [1, 2]
    single = next(s for s in result.stats if s.size == 1)
    assert single.representative_pairwise_mean is None  # no pair to compare


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_embedding_plot(tmp_path: Path, method: str) -> None:
    features, _ = separable()
    result: Clustering = cluster_features(features, K, seed=0)
    path = tmp_path / "embedding.png"
    plot_embedding(path, features, result, method=method, max_points=60)
    assert path.stat().st_size > 1000


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--workers", "0"), ("--workers", "-1"), ("--batch-size", "0"), ("--k", "0"),
     ("--representatives", "0")],
)  # fmt: skip
def test_counts_below_one_are_refused_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str
) -> None:
    from suite.cli import main

    out = tmp_path / "out"
    argv = ["cluster", "--shards", str(tmp_path / "none"), "--encoder", "random:32", flag, value,
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 2
    assert f"error: {flag} is {value}, it must be at least 1" in capsys.readouterr().err
    assert sorted(tmp_path.iterdir()) == []


def test_a_changed_input_shard_is_refused_naming_it(tmp_path: Path) -> None:
    from suite.errors import ShardError
    from suite.features.cluster import cluster_shard_set
    from tests.unit.data.helpers import make_shard_set

    source = make_shard_set(tmp_path / "in", n=8)
    shard = source / "shard-00001.h5"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ShardError, match="sha256 differs") as err:
        cluster_shard_set(source, tmp_path / "out", "random:32", 2)
    assert str(shard) in err.value.what
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_out_inside_the_input_is_refused(tmp_path: Path) -> None:
    from suite.features.cluster import cluster_shard_set
    from tests.unit.data.helpers import make_shard_set

    source = make_shard_set(tmp_path / "in", n=8)
    before = sorted(p.name for p in source.iterdir())
    with pytest.raises(ShardError, match="lies inside the input"):
        cluster_shard_set(source, source / "clustered", "random:32", 2)
    assert sorted(p.name for p in source.iterdir()) == before


def test_the_keep_rule_chooses_by_the_representatives_pairwise_cosine() -> None:
    from suite.features.cluster import KeepRule

    features, _ = separable()
    stats = cluster_features(features, 3, representatives=5).stats
    means = [s.representative_pairwise_mean for s in stats]
    best = int(np.argmax(means))
    assert KeepRule().apply(stats) == [0, 1, 2] and all(s.kept for s in stats)
    assert KeepRule(top=1).apply(stats) == [best]
    assert [s.kept for s in stats] == [c == best for c in range(3)]
    cut = sorted(means)[1]  # the two best pass a threshold at the middle mean
    assert sorted(KeepRule(min_pairwise_mean=cut).apply(stats)) == sorted(
        c for c in range(3) if means[c] >= cut
    )
    with pytest.raises(DataError, match="keeps none of the 3 clusters") as err:
        KeepRule(min_pairwise_mean=1.5).apply(stats)
    assert "loosen cluster.keep" in err.value.fix


def test_classes_and_split_choose_the_rows_clustered(tmp_path: Path) -> None:
    from suite.data.shards import read_manifest
    from suite.features.cluster import _chosen_rows
    from tests.unit.data.helpers import make_shard_set

    shards = make_shard_set(tmp_path / "s", n=12, classes=("a", "b"))  # label i % 2, split i % 3
    manifest = read_manifest(shards)
    assert _chosen_rows(shards, manifest, ["a"], "train").tolist() == [0, 6]
    assert _chosen_rows(shards, manifest, None, "test").tolist() == [2, 5, 8, 11]
    with pytest.raises(DataError, match="no class c") as err:
        _chosen_rows(shards, manifest, ["c"], None)
    assert "a, b" in err.value.fix
    with pytest.raises(DataError, match="unknown split"):
        _chosen_rows(shards, manifest, None, "holdout")
