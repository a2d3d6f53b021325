"""Seed 004's per-cluster flow in a run: the clusters a generator is trained on, how many
images each gives, and the one labelled synthetic set their samples become.

The cluster stage writes the clustered set and its ``clusters.json`` (sizes, the kept clusters,
each cluster's majority class). ``generator.clusters: each`` trains one generator per kept
cluster on that cluster's rows (``RUN/generator/clusters/cluster<c>/``); ``conditioned`` trains one
generator whose class label is the cluster id. Sampling then draws ``sample.num_images`` split over
the kept clusters (``RUN/sample/clusters/...``), and :func:`write_cluster_synthetic_set` joins the
parts into ``RUN/sample/synthetic``: every row labelled with its cluster's class (the real set's
class names) and carrying its ``cluster`` id, so the evaluations read it like any sampled set.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import suite
from suite.artifacts.digests import sha256_file
from suite.errors import DataError

CLUSTERS_DIR = "clusters"  # per-cluster parts, below the generator and sample stage folders
SYNTHETIC_DIR = "synthetic"  # the joined set, below the sample stage folder
CONDITIONED_PART = "conditioned"


def part_name(cluster: int) -> str:
    return f"cluster{cluster}"


def cluster_seed(seed: int, cluster: int) -> int:
    """Cluster c's sampling seed: the clusters' generators do not all start from the same noise."""
    from suite.artifacts.digests import sha256_text

    return int(sha256_text(f"{seed}:cluster{cluster}")[:15], 16)


@dataclass(frozen=True, slots=True)
class ClusterPlan:
    """What the cluster stage decided: the kept clusters, their sizes and classes."""

    k: int
    kept: list[int]
    sizes: list[int]  # every cluster's, by id
    class_names: list[str]  # the clustered set's
    class_of_cluster: list[str | None]  # each cluster's majority class

    @classmethod
    def read(cls, cluster_set: Path) -> ClusterPlan:
        from suite.data.shards import read_manifest
        from suite.features.cluster import CLUSTERS_JSON

        path = Path(cluster_set) / CLUSTERS_JSON
        if not path.is_file():
            raise DataError(
                f"{path} is missing: {cluster_set} is not a clustered set",
                "run the cluster stage first (synmed run CONFIG --only cluster)",
            )
        report = json.loads(path.read_text())
        if "kept" not in report:
            raise DataError(
                f"{path} was written before clusters were kept or dropped",
                "run the cluster stage again (synmed run CONFIG --only cluster --force)",
            )
        return cls(
            k=int(report["k"]),
            kept=[int(c) for c in report["kept"]],
            sizes=[int(c["size"]) for c in report["clusters"]],
            class_names=list(read_manifest(cluster_set).class_names),
            class_of_cluster=list(report["class_of_cluster"]),
        )

    def counts(self, total: int, rule: str) -> dict[int, int]:
        """``total`` images over the kept clusters, exactly: in proportion to their sizes
        (largest remainder, ties to the lower id) or equally."""
        weights = np.array(
            [self.sizes[c] if rule == "proportional" else 1 for c in self.kept], dtype=np.float64
        )
        share = total * weights / weights.sum()
        counts = np.floor(share).astype(np.int64)
        order = sorted(range(len(self.kept)), key=lambda i: (-(share[i] - counts[i]), i))
        for i in order[: total - int(counts.sum())]:
            counts[i] += 1
        return {c: int(n) for c, n in zip(self.kept, counts)}

    def class_weights(self, rule: str) -> list[float]:
        """A cluster-conditioned generator's sampling weights: zero for clusters not kept."""
        return [
            (float(self.sizes[c]) if rule == "proportional" else 1.0) if c in self.kept else 0.0
            for c in range(self.k)
        ]


def write_cluster_synthetic_set(
    parts: list[tuple[Path, int | None]],
    out: Path,
    plan: ClusterPlan,
    *,
    shard_size: int = 1000,
) -> int:
    """Join sampled sets into ``out``; returns its rows. A part ``(path, c)`` holds cluster c's
    images (an unconditional generator's); ``(path, None)`` a cluster-conditioned generator's,
    whose labels are cluster ids. Each row gets label = its cluster's class and ``cluster`` = c."""
    import h5py

    from suite.data.merge import ROW_KEYS
    from suite.data.shards import MANIFEST, STRING_DATASETS, read_manifest
    from suite.data.verify import verify_shard_set
    from suite.data.writer import ShardSetWriter, staged_output

    names = plan.class_names
    labelled = bool(names) and all(plan.class_of_cluster[c] is not None for c in plan.kept)
    attrs: dict[str, Any] = {
        "source": "synthetic",
        "class_names": names if labelled else [],
        "label_kind": "multiclass" if labelled else "none",
        "mask_names": [],
        "clusters_from": [
            {
                "path": str(Path(p).resolve()),
                "cluster": c,
                "manifest_sha256": sha256_file(Path(p) / MANIFEST),
            }
            for p, c in parts
        ],  # fmt: skip
        "synmed_version": suite.__version__,
    }
    copied = tuple(k for k in (*ROW_KEYS, "prompts", "metadata") if k not in ("labels", "cluster"))
    index = 0
    with staged_output(out, overwrite=True, inputs=[p for p, _ in parts]) as staging:
        for path, _ in parts:
            verify_shard_set(path)
        writer = ShardSetWriter(staging, attrs, shard_size=shard_size)
        for path, fixed in parts:
            manifest = read_manifest(path)
            for rec in manifest.shards:
                with h5py.File(Path(path) / rec.file, "r") as h5:
                    columns = {
                        k: h5[k].asstr()[:] if k in STRING_DATASETS else h5[k][:]
                        for k in copied
                        if k in h5
                    }
                    clusters = (
                        np.full(rec.count, fixed, dtype=np.int64)
                        if fixed is not None
                        else h5["labels"][:].astype(np.int64)
                    )
                for r in range(rec.count):
                    row: dict[str, Any] = {k: v[r] for k, v in columns.items()}
                    c = int(clusters[r])
                    row["cluster"] = np.int32(c)
                    if labelled:
                        row["labels"] = np.int64(names.index(plan.class_of_cluster[c]))
                    row["index"] = index
                    writer.add(row)
                    index += 1
        writer.close()
    return index
