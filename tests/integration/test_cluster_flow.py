"""Seed 004's per-cluster flow as one run, on a real local Ray: cluster the training images of
one class, train a generator per kept cluster (or one conditioned on the cluster id), sample in
proportion to the clusters' sizes and join the parts into one set labelled with the clustered
class; on the real SLURM the per-cluster generators are one array task each."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from suite.data.dataset import ShardDataset
from suite.data.verify import verify_shard_set
from suite.pipeline.runner import record_path
from tests.integration.helpers import synmed
from tests.integration.slurm_jobs import job_state
from tests.unit.data.helpers import make_shard_set

pytestmark = pytest.mark.ray


def run_config(tmp_path: Path, shards: Path, **generator: object) -> Path:
    cfg = {
        "run": {"name": "clusters", "out_dir": str(tmp_path / "runs"), "seed": 0},
        "stages": ["ingest", "cluster", "generator", "sample"],
        "ingest": {"shards": str(shards)},
        # the training rows of class a (6 of 36), in 2 clusters; the better one only
        "cluster": {
            "shards": "real",
            "encoder": "random:16",
            "k": 2,
            "representatives": 2,
            "classes": ["a"],
            "split": "train",
        },  # fmt: skip
        "generator": {
            "model": {
                "kind": "dcgan",
                "image_size": 16,
                "channels": 1,
                "latent_dim": 8,
                "ngf": 8,
                "ndf": 8,
                "mode": "unconditional",
                "num_classes": 0,
            },
            "train": {
                "batch_size": 2,
                "max_steps": 2,
                "lr": 2.0e-4,
                "ema_decay": 0.0,
                "ema_update_after_step": 0,
                "num_workers": 0,
                "checkpoint_every": 2,
                "log_every": 1,
                "sample_every": 2,
                "sample_images": 2,
            },
            **generator,
        },  # fmt: skip
        "sample": {"num_images": 5, "sampler": "gan", "batch_size": 4, "shard_size": 4},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_one_generator_per_cluster_gives_one_labelled_set(tmp_path: Path) -> None:
    shards = make_shard_set(tmp_path / "real", n=36, shard_size=12, classes=("a", "b"))
    config = run_config(tmp_path, shards, clusters="each")
    done = synmed("run", str(config), timeout=400)
    assert done.returncode == 0, done.stderr + done.stdout
    run = tmp_path / "runs" / "clusters"

    report = json.loads((run / "cluster" / "clusters.json").read_text())
    assert report["clustered"] == 6 and report["kept"] == [0, 1]
    assert report["class_of_cluster"] == ["a", "a"]
    clustered = ShardDataset(run / "cluster", clusters=[0, 1])
    assert len(clustered) == 6 and set(clustered.labels.tolist()) == {0}  # class a's train rows
    assert len(ShardDataset(run / "cluster", representatives_only=True)) == 4

    sizes = [c["size"] for c in report["clusters"]]
    record = json.loads((record_path(run, "sample")).read_text())
    counts = {int(c): n for c, n in record["outputs"]["per_cluster"].items()}
    assert sum(counts.values()) == 5
    # in proportion to the sizes, to the nearest image
    assert all(abs(counts[c] - 5 * sizes[c] / 6) < 1 for c in (0, 1))
    for c in (0, 1):  # each cluster's own generator, trained on its rows only
        export = run / "generator" / "clusters" / f"cluster{c}" / "export"
        assert (export / "synmed-export.json").is_file()

    synthetic = run / "sample" / "synthetic"
    verify_shard_set(synthetic)
    data = ShardDataset(synthetic)
    assert data.class_names == ["a", "b"] and len(data) == 5
    assert set(data.labels.tolist()) == {0}
    cluster = np.concatenate(
        [h5py.File(p, "r")["cluster"][:] for p in sorted(synthetic.glob("shard-*.h5"))]
    )
    assert np.bincount(cluster, minlength=2).tolist() == [counts[0], counts[1]]
    # the parts are what each cluster's generator drew
    for c in (0, 1):
        assert len(ShardDataset(run / "sample" / "clusters" / f"cluster{c}")) == counts[c]

    # what the SLURM join job sees: each part's export is this config's at its last step, so it
    # records the stage without loading any model again
    from suite.config import load_config
    from suite.pipeline.config import PipelineConfig
    from suite.pipeline.stages import STAGES, Context, _exported_at_the_end

    ctx = Context(load_config(config, schema=PipelineConfig), run)
    for c in (0, 1):
        part = STAGES["generator"]._config(ctx, f"cluster{c}", run / "generator" / "clusters",
                                           clusters=[c])  # fmt: skip
        assert _exported_at_the_end(part, run / "generator" / "clusters" / f"cluster{c}")
    again = synmed("run", str(config))  # complete: every stage is skipped
    assert again.returncode == 0 and again.stdout.count("skipped") == 4, again.stdout


def test_one_generator_conditioned_on_the_cluster_id(tmp_path: Path) -> None:
    shards = make_shard_set(tmp_path / "real", n=36, shard_size=12, classes=("a", "b"))
    model = {"kind": "dcgan", "image_size": 16, "channels": 1, "latent_dim": 8, "ngf": 8,
             "ndf": 8, "mode": "conditional", "num_classes": 2}  # fmt: skip
    config = run_config(tmp_path, shards, clusters="conditioned", model=model)
    done = synmed("run", str(config), timeout=400)
    assert done.returncode == 0, done.stderr + done.stdout
    run = tmp_path / "runs" / "clusters"
    export = json.loads((run / "generator" / "export" / "synmed-export.json").read_text())
    assert export["provenance"]["class_names"] == ["cluster0", "cluster1"]  # on cluster ids
    part = ShardDataset(run / "sample" / "clusters" / "conditioned")
    synthetic = ShardDataset(run / "sample" / "synthetic")
    assert len(part) == len(synthetic) == 5
    assert synthetic.class_names == ["a", "b"] and set(synthetic.labels.tolist()) == {0}
    cluster = np.concatenate(
        [
            h5py.File(p, "r")["cluster"][:]
            for p in sorted((run / "sample" / "synthetic").glob("*.h5"))
        ]
    )
    assert cluster.tolist() == part.labels.tolist()  # each row keeps the cluster it was drawn for


@pytest.mark.slurm
def test_per_cluster_generators_are_one_slurm_array_task_each(
    slurm: dict[str, str], tmp_path: Path
) -> None:
    shards = make_shard_set(tmp_path / "real", n=36, shard_size=12, classes=("a", "b"))
    config = str(run_config(tmp_path, shards, clusters="each"))
    assert synmed("run", config, "--until", "cluster").returncode == 0
    # the same clustered run, to train here for the comparison
    local_out = tmp_path / "local"
    shutil.copytree(tmp_path / "runs", local_out)
    resources = [f"slurm.partition={slurm['partition']}", "slurm.cpus_per_task=1",
                 "slurm.time_min=5", "slurm.mem_gb=2"]  # fmt: skip
    proc = synmed("run", config, *resources, "--only", "generator", "--on", "slurm")
    assert proc.returncode == 0, proc.stderr
    (parts,) = [x for x in proc.stdout.splitlines() if "submitted as array job" in x]
    (line,) = [x for x in proc.stdout.splitlines() if "submitted as job" in x]
    assert "parts 0..1" in parts  # one task per cluster id
    array = parts.split("array job ")[1].split()[0]
    join = line.split("as job ")[1].split()[0]
    assert line.endswith(f"(after {array})")  # the join waits for every task
    here = synmed("run", config, f"run.out_dir={local_out}", "--only", "generator")
    assert here.returncode == 0, here.stderr
    assert job_state(join, timeout=240) == "COMPLETED"
    assert [job_state(f"{array}_{c}") for c in (0, 1)] == ["COMPLETED", "COMPLETED"]
    listed = [json.loads(x) for x in (tmp_path / "runs" / "clusters" / "jobs.jsonl").open()]
    assert [(j["stage"], j["job_id"]) for j in listed] == [
        ("generator[0]", f"{array}_0"), ("generator[1]", f"{array}_1"), ("generator", join),
    ]  # fmt: skip
    run, local = tmp_path / "runs" / "clusters", local_out / "clusters"
    assert record_path(run, "generator").is_file()  # the join job recorded the stage
    for c in (0, 1):  # each task trained its cluster as the in-process run did, bit for bit
        name = Path("generator") / "clusters" / f"cluster{c}" / "export" / "generator.safetensors"
        assert (run / name).read_bytes() == (local / name).read_bytes()
