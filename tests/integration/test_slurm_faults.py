"""Cluster faults on the real local SLURMs: a node set DOWN under a training job (the job is requeued
and resumes from its saved step), and a Ray worker node lost mid-sampling on the two-host cluster
(the job still writes every index once, the same bytes as an uninterrupted run)."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import psutil
import pytest
import torch
from safetensors.torch import load_file

from suite.data.dataset import ShardDataset
from suite.data.verify import verify_shard_set
from suite.train import run_state
from tests.integration.helpers import REPO, synmed, synmed_here, wait_until
from tests.integration.slurm_jobs import job_state, run

pytestmark = pytest.mark.slurm
VENV = Path(sys.executable).parent.parent
LUCID = str(REPO / "configs" / "generator" / "tiny_lucidrains.yaml")
# Long enough that the node goes down mid-run (the rig runs ~10 steps a second), short enough
# that the requeued job finishes in seconds.
STEPS = 60


def squeue(job: str, fmt: str) -> str:
    return run(["squeue", "-h", "-j", job, "-o", fmt]).stdout.strip()


def train_overrides(shards: Path, out_dir: Path) -> list[str]:
    return [LUCID, f"data.shards={shards}", f"run.out_dir={out_dir}", f"train.max_steps={STEPS}",
            "train.checkpoint_every=5", "train.sample_every=1000"]  # fmt: skip


def test_node_down_mid_job_requeues_and_resumes_from_the_saved_step(
    slurm: dict[str, str], tmp_path: Path, mni16: Path
) -> None:
    proc = run(
        ["sbatch", "--parsable", f"--partition={slurm['partition']}", f"--chdir={tmp_path}",
         "--nodes=1", "--gpus-per-node=0", "--ntasks-per-node=1", "--cpus-per-task=1",
         "--mem-per-cpu=2G", "--time=10",
         f"--export=ALL,SYNMED_VENV={VENV},OMP_NUM_THREADS=1,TQDM_DISABLE=1",
         str(REPO / "slurm" / "pretrain_ddpm.sbatch"), *train_overrides(mni16, tmp_path / "job")],
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    job = proc.stdout.strip().split(";")[0]
    run_dir = tmp_path / "job" / "tiny-lucidrains"
    node = ""
    try:
        wait_until(lambda: len(run_state.list_checkpoints(run_dir)) >= 2, 180, "two checkpoints")
        node = squeue(job, "%N")
        assert node, f"job {job} is not running"
        down = run(["scontrol", "update", f"nodename={node}", "state=down", "reason=fault-test"])
        assert down.returncode == 0, down.stderr
        wait_until(lambda: squeue(job, "%T") == "", 400, f"job {job} to requeue and finish", 1)
    finally:
        if node:  # later tests need both nodes
            run(["scontrol", "update", f"nodename={node}", "state=resume"])
        run(["scancel", job])
    log = (tmp_path / f"synmed-ddpm-{job}.out").read_text(
        errors="replace"
    )  # a bar cut mid-character
    assert job_state(job) == "COMPLETED", log[-3000:]
    assert "restart 1" in log, log[-3000:]
    resumed = log.split("resumed from ")[1].split("\n")[0]
    step = int(resumed.rsplit(" at step ", 1)[1])
    assert 0 < step < STEPS, resumed
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == STEPS and summary["resumed_from"].endswith(
        run_state.step_dir_name(step)
    )
    steps = [
        json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == list(range(1, STEPS + 1))  # none lost, none repeated
    # the same weights as a run that was never interrupted
    ref = synmed("train", "generator", *train_overrides(mni16, tmp_path / "ref"))
    assert ref.returncode == 0, ref.stderr[-3000:]
    want = load_file(tmp_path / "ref" / "tiny-lucidrains" / "export" / "model.safetensors")
    got = load_file(run_dir / "export" / "model.safetensors")
    assert want.keys() == got.keys() and all(torch.equal(got[k], v) for k, v in want.items())


def images_by_index(directory: Path) -> dict[int, bytes]:
    data = ShardDataset(directory)
    return {int(data[i]["index"]): data[i]["image"].numpy().tobytes() for i in range(len(data))}


def sample_args(generator: Path, out: Path, workers: int) -> list[str]:
    return ["sample", "--checkpoint", str(generator), "--num-images", "24", "--shard-size", "2",
            "--batch-size", "2", "--sampler", "dpm-solver", "--sampling-steps", "4",
            "--workers", str(workers), "--out", str(out)]  # fmt: skip


def raylets_of(job: str, node_index: int) -> list[int]:
    """The raylet of the job's Ray node ``node_index`` (its temp dir names the job and node)."""
    marker = f"synmed-ray-{job}-{node_index}"
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
        except psutil.Error:
            continue
        if "raylet" in (proc.info["name"] or "") and marker in cmdline:
            found.append(proc.pid)
    return found


@pytest.mark.ray
@pytest.mark.usefixtures("joined_ray")  # the reference run (not the job) joins the session's Ray
def test_ray_worker_node_lost_mid_sampling_every_index_once(
    netns_slurm: dict[str, object],
    tmp_path: Path,
    tiny_generator: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "synthetic"
    proc = run(
        [*netns_slurm["exec"], "sbatch", "--parsable", f"--partition={netns_slurm['partition']}",
         f"--chdir={tmp_path}", "--nodes=2", "--gpus-per-node=0", "--cpus-per-task=1",
         "--mem-per-cpu=3G", "--time=10", f"--export=ALL,SYNMED_VENV={VENV},OMP_NUM_THREADS=1",
         str(REPO / "slurm" / "sample_ray.sbatch"), *sample_args(tiny_generator, out, 2)],
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    job = proc.stdout.strip().split(";")[0]

    def state() -> str:
        return run([*netns_slurm["exec"], "squeue", "-h", "-j", job, "-o", "%T"]).stdout.strip()

    try:
        # a worker node with an actor at work: the job's folder names the actors' nodes
        workers = out / ".workers"
        wait_until(lambda: workers.is_dir() and any(p.name.startswith("10.231.0.12_")
                                                    for p in workers.iterdir())
                   and len(list(out.glob("shard-*.h5"))) >= 1, 240, "the worker node at work")  # fmt: skip
        victims = raylets_of(job, 1)
        assert victims, "no raylet of the worker node found"
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: state() == "", 300, f"job {job} to finish", 1)
    finally:
        run([*netns_slurm["exec"], "scancel", job])
    log = (tmp_path / f"synmed-ray-{job}.out").read_text(errors="replace")
    assert "2 Ray node(s) up" in log, log[-3000:]
    summary = json.loads((out / "sample_summary.json").read_text())
    assert verify_shard_set(out).count == 24, log[-3000:]
    assert sum(summary["images_per_worker"].values()) == 24
    got = images_by_index(out)
    assert sorted(got) == list(range(24))  # every index exactly once
    # the reference in this process, on the session's Ray (sampling as a process of its own is
    # tests/integration/test_sample_ray.py's)
    ref = synmed_here(capsys, *sample_args(tiny_generator, tmp_path / "ref", 1))
    assert ref.returncode == 0, ref.stderr[-3000:]
    assert got == images_by_index(tmp_path / "ref")  # the same bytes, index by index
    left = raylets_of(job, 0) + raylets_of(job, 1)
    assert not left, f"Ray processes of job {job} still running: {left}"
