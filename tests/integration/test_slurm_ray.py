"""`sbatch slurm/sample_ray.sbatch sample ...` on the real local SLURM: Ray starts inside the
allocation, the sampling job runs against it, and Ray is gone when the job ends."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from suite.data.demo import resolve_source
from suite.data.ingest.options import IngestOptions
from suite.data.ingest.pipeline import ingest
from suite.data.verify import verify_shard_set
from tests.integration.slurm_jobs import JOB_TIMEOUT_S, job_state, run

pytestmark = [pytest.mark.slurm, pytest.mark.ray]
REPO = Path(__file__).resolve().parents[2]
VENV = Path(sys.executable).parent.parent


@pytest.fixture(scope="module")
def generator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gen")
    path, defaults = resolve_source("demo:mni152")
    ingest(path, root / "mni16", IngestOptions(**{**defaults, "image_size": 16}), progress=False)
    proc = subprocess.run(
        [sys.executable, "-m", "suite", "train", "generator", str(REPO / "configs/generator/tiny_lucidrains.yaml"),
         f"data.shards={root / 'mni16'}", f"run.out_dir={root}", "train.max_steps=2"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "TQDM_DISABLE": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return root / "tiny-lucidrains"


def test_sampling_job_on_a_ray_cluster_inside_the_allocation(
    slurm: dict[str, str], tmp_path: Path, generator: Path
) -> None:
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
