"""The per-cluster flow's plan (suite/pipeline/clusters.py and the run's checks): counts per
cluster, the conditioned generator's weights, the joined set, and what a run config may combine."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from suite.config import load_config, to_dict
from suite.data.dataset import ShardDataset
from suite.data.shards import read_manifest
from suite.errors import ConfigError, DataError, ShardError
from suite.features.cluster import CLUSTERS_JSON, write_clustered_set
from suite.pipeline.clusters import ClusterPlan, write_cluster_synthetic_set
from suite.pipeline.config import PipelineConfig, stage_order
from suite.pipeline.runner import plan
from suite.pipeline.stages import STAGES
from tests.unit.data.helpers import make_shard_set

REPO = Path(__file__).resolve().parents[3]


def cluster_plan(sizes: list[int], kept: list[int]) -> ClusterPlan:
    return ClusterPlan(k=len(sizes), kept=kept, sizes=sizes, class_names=["a", "b"],
                       class_of_cluster=["a"] * len(sizes))  # fmt: skip


def test_counts_are_exact_and_in_proportion_to_the_kept_clusters() -> None:
    p = cluster_plan([50, 30, 20, 0], kept=[0, 1, 2])
    assert p.counts(10, "proportional") == {0: 5, 1: 3, 2: 2}
    assert p.counts(7, "proportional") == {0: 4, 1: 2, 2: 1}  # 3.5, 2.1, 1.4: largest remainder
    assert p.counts(7, "equal") == {0: 3, 1: 2, 2: 2}
    assert cluster_plan([50, 30, 20], kept=[2, 0]).counts(7, "proportional") == {2: 2, 0: 5}
    for total in range(1, 40):
        assert sum(p.counts(total, "proportional").values()) == total
    assert p.class_weights("proportional") == [50.0, 30.0, 20.0, 0.0]
    assert cluster_plan([5, 5, 5], kept=[1]).class_weights("equal") == [0.0, 1.0, 0.0]


def clustered(tmp_path: Path) -> Path:
    """A clustered set made by hand (no Ray): rows of class a in clusters 0/1, class b left out."""
    shards = make_shard_set(tmp_path / "real", n=8, classes=("a", "b"))
    manifest = read_manifest(shards)
    cluster = np.array([0, -1, 1, -1, 0, -1, 1, -1], dtype=np.int32)
    rank = np.array([1, 0, 1, 0, 0, 0, 2, 0], dtype=np.int32)
    attrs = {**manifest.attrs, "clustering": {"k": 2}}
    out = tmp_path / "clustered"
    out.mkdir()
    write_clustered_set(shards, manifest, out, np.zeros((8, 4), np.float32), cluster, attrs, rank)
    report = {"k": 2, "kept": [0, 1], "class_of_cluster": ["a", "a"],
              "clusters": [{"size": 2}, {"size": 2}]}  # fmt: skip
    (out / CLUSTERS_JSON).write_text(json.dumps(report))
    return out


def test_the_cluster_id_as_label_and_the_representatives_as_rows(tmp_path: Path) -> None:
    out = clustered(tmp_path)
    by_cluster = ShardDataset(out, labels_from="cluster")
    assert by_cluster.class_names == ["cluster0", "cluster1"]
    assert by_cluster.indices.tolist() == [0, 2, 4, 6]  # rows left out (-1) have no label
    assert by_cluster.labels.tolist() == [0, 1, 0, 1] and by_cluster[1]["label"] == 1
    assert ShardDataset(out, representatives_only=True).indices.tolist() == [0, 2, 6]
    assert ShardDataset(out, clusters=[1], representatives_only=True).indices.tolist() == [2, 6]
    with pytest.raises(ShardError, match="is not a clustered set") as err:
        ShardDataset(tmp_path / "real", labels_from="cluster")
    assert "synmed cluster" in err.value.fix


def test_the_parts_join_into_one_set_labelled_with_the_clusters_class(tmp_path: Path) -> None:
    source = clustered(tmp_path)
    p = ClusterPlan.read(source)
    assert (p.k, p.kept, p.sizes, p.class_names) == (2, [0, 1], [2, 2], ["a", "b"])
    # an unconditional generator's part (cluster 1), and a conditioned one's (labels = cluster)
    part1 = make_shard_set(tmp_path / "p1", n=3, classes=("x",), source="synthetic")
    conditioned = make_shard_set(tmp_path / "pc", n=4, classes=("cluster0", "cluster1"))
    out = tmp_path / "joined"
    assert write_cluster_synthetic_set([(part1, 1), (conditioned, None)], out, p) == 7
    joined = ShardDataset(out)
    assert joined.class_names == ["a", "b"] and joined.labels.tolist() == [0] * 7
    import h5py

    with h5py.File(out / read_manifest(out).shards[0].file) as h5:
        assert h5["cluster"][:].tolist() == [1, 1, 1, 0, 1, 0, 1]
    assert [f["cluster"] for f in read_manifest(out).attrs["clusters_from"]] == [1, None]


def test_a_set_clustered_before_keep_rules_is_refused_with_the_fix(tmp_path: Path) -> None:
    out = clustered(tmp_path)
    (out / CLUSTERS_JSON).write_text(json.dumps({"k": 2, "clusters": []}))
    with pytest.raises(DataError, match="before clusters were kept") as err:
        ClusterPlan.read(out)
    assert "--only cluster --force" in err.value.fix


def run_cfg(tmp_path: Path, *overrides: str) -> PipelineConfig:
    base = [f"run.out_dir={tmp_path}", f"ingest.shards={tmp_path}", "ingest.source=null",
            "stages=[ingest,cluster,generator,sample]", "cluster.shards=real",
            "generator.model.kind=dcgan", "generator.model.image_size=16",
            "generator.model.channels=1", "sample.sampler=gan"]  # fmt: skip
    return load_config(None, [*base, *overrides], schema=PipelineConfig)


def test_the_cluster_stage_on_real_images_runs_before_the_generator(tmp_path: Path) -> None:
    cfg = run_cfg(tmp_path, "generator.clusters=each")
    assert stage_order(cfg) == ["ingest", "cluster", "generator", "sample"]
    assert STAGES["generator"].needs(cfg) == ["cluster"]
    assert STAGES["sample"].needs(cfg) == ["generator", "cluster"]
    assert STAGES["generator"].parts(cfg) == [0, 1, 2, 3, 4]  # cluster.k ids: one task each
    synthetic = run_cfg(tmp_path, "cluster.shards=synthetic")
    assert stage_order(synthetic) == ["ingest", "generator", "sample", "cluster"]
    assert STAGES["generator"].parts(synthetic) is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["stages=[ingest,generator,sample]", "generator.clusters=each"],
         "the run has no cluster stage"),
        (["cluster.shards=synthetic", "generator.clusters=each"], "cluster.shards is synthetic"),
        (["generator.clusters=conditioned", "generator.model.mode=conditional",
          "generator.model.num_classes=3"], "num_classes=3 but cluster.k=5"),
        (["generator.clusters=each", "sample.per_class=4"], "sample.per_class is set"),
    ],
)  # fmt: skip
def test_what_the_per_cluster_flow_cannot_combine_is_refused_at_plan_time(
    tmp_path: Path, overrides: list[str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        plan(run_cfg(tmp_path, *overrides))
    assert not (tmp_path / "run").exists()


def test_runs_made_before_the_flow_existed_keep_their_stage_digests(tmp_path: Path) -> None:
    cfg = run_cfg(tmp_path)
    # the new options at their defaults are left out: a finished run is not redone
    body = to_dict(cfg.generator)
    for key in ("clusters", "cluster_rows"):
        body.pop(key)
    assert STAGES["generator"].settings(cfg) == body
    assert "cluster_counts" not in STAGES["sample"].settings(cfg)
    assert not {"classes", "split", "keep"} & set(STAGES["cluster"].settings(cfg))
    chosen = run_cfg(tmp_path, "generator.clusters=each", "cluster.classes=[a]")
    assert STAGES["generator"].settings(chosen)["clusters"] == "each"
    assert STAGES["cluster"].settings(chosen)["classes"] == ["a"]
