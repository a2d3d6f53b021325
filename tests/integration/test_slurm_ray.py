"""`sbatch slurm/sample_ray.sbatch sample ...` on the real local SLURM: Ray starts inside the
allocation, the sampling job runs against it, and Ray is gone when the job ends. Once on the
loopback cluster (one Ray node), once on nodes that are separate network hosts (a Ray worker node
joins the head across the network)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from suite.data.verify import verify_shard_set
from tests.integration.slurm_jobs import JOB_TIMEOUT_S, job_state, run

pytestmark = [pytest.mark.slurm, pytest.mark.ray]
REPO = Path(__file__).resolve().parents[2]
VENV = Path(sys.executable).parent.parent


def test_sampling_job_on_a_ray_cluster_inside_the_allocation(
    slurm: dict[str, str], tmp_path: Path, tiny_generator: Path
) -> None:
    generator = tiny_generator
    out = tmp_path / "synthetic"
    proc = run(
        ["sbatch", "--parsable", "--wait", f"--partition={slurm['partition']}", f"--chdir={tmp_path}",
         "--nodes=2", "--gpus-per-node=0", "--cpus-per-task=1", "--mem-per-cpu=3G", "--time=10",
         f"--export=ALL,SYNMED_VENV={VENV},OMP_NUM_THREADS=1", str(REPO / "slurm" / "sample_ray.sbatch"),
         "sample", "--checkpoint", str(generator), "--num-images", "12", "--shard-size", "4",
         "--batch-size", "2", "--sampler", "dpm-solver", "--sampling-steps", "4", "--workers", "2",
         "--out", str(out)],
        timeout=JOB_TIMEOUT_S * 5,
    )  # fmt: skip
    job = proc.stdout.strip().split(";")[0]
    log = (tmp_path / f"synmed-ray-{job}.out").read_text()
    assert proc.returncode == 0 and job_state(job) == "COMPLETED", log[-3000:]
    assert f"head n1 (127.0.0.1:{20000 + int(job) % 10000})" in log and "Ray node(s) up" in log
    assert "12 images in 3 shard(s)" in log
    assert verify_shard_set(out).count == 12
    left = subprocess.run(["pgrep", "-f", f"synmed-ray-{job}-"], capture_output=True, text=True)
    assert left.stdout.strip() == "", f"Ray processes of job {job} still running: {left.stdout}"


def test_worker_node_on_another_host_joins_the_head_and_samples(
    netns_slurm: dict[str, object], tmp_path: Path, tiny_generator: Path
) -> None:
    out = tmp_path / "synthetic"
    proc = run(
        [*netns_slurm["exec"], "sbatch", "--parsable", "--wait", f"--partition={netns_slurm['partition']}",
         f"--chdir={tmp_path}", "--nodes=2", "--gpus-per-node=0", "--cpus-per-task=1", "--mem-per-cpu=3G",
         "--time=10", f"--export=ALL,SYNMED_VENV={VENV},OMP_NUM_THREADS=1",
         str(REPO / "slurm" / "sample_ray.sbatch"), "sample", "--checkpoint", str(tiny_generator),
         "--num-images", "12", "--shard-size", "2", "--batch-size", "2", "--sampler", "dpm-solver",
         "--sampling-steps", "4", "--workers", "2", "--out", str(out)],
        timeout=JOB_TIMEOUT_S * 5,
    )  # fmt: skip
    job = proc.stdout.strip().split(";")[0]
    log = (tmp_path / f"synmed-ray-{job}.out").read_text()
    assert proc.returncode == 0, log[-3000:] + proc.stderr
    assert f"head synmed-h1 (10.231.0.11:{20000 + int(job) % 10000})" in log
    assert "2 Ray node(s) up" in log
    summary = json.loads((out / "sample_summary.json").read_text())
    # one sampling actor on each host (spread), and every image landed once
    hosts = {"10.231.0.11", "10.231.0.12"}
    assert {actor.split("/")[0] for actor in summary["actors"]} == hosts, summary
    assert set(summary["images_per_node"]) <= hosts and summary["sampled_this_run"] == 12
    assert verify_shard_set(out).count == 12
    left = subprocess.run(["pgrep", "-f", f"synmed-ray-{job}-"], capture_output=True, text=True)
    assert left.stdout.strip() == "", f"Ray processes of job {job} still running: {left.stdout}"
