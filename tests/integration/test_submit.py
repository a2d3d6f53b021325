"""`synmed submit` on the real local SLURM: a 2-node Submitit training job that is requeued mid-run
continues from the step it saved, and a job that dies is reported FAILED with its log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from suite.train import run_state
from tests.integration.helpers import synmed, wait_until
from tests.integration.slurm_jobs import job_state, run

pytestmark = pytest.mark.slurm
REPO = Path(__file__).resolve().parents[2]
TINY = str(REPO / "configs" / "generator" / "tiny_lucidrains.yaml")
# Long enough that the requeue at step 5 lands mid-run with a wide margin (95 steps, ~10 s at the
# rig's ~10 steps a second; the signal takes well under 1 s), short enough not to spend time
# training after the requeue.
REQUEUE_STEPS = 100


def test_requeued_two_node_job_continues_from_the_saved_step(
    slurm: dict[str, str], tmp_path: Path, mni16: Path
) -> None:
    proc = synmed(
        "submit", "train-generator", TINY, f"data.shards={mni16}", f"run.out_dir={tmp_path}",
        f"train.max_steps={REQUEUE_STEPS}", "train.checkpoint_every=1000", "train.sample_every=1000",
        "--nodes", "2", "--cpus-per-task", "1", "--mem-gb", "2", "--partition", slurm["partition"], "--time", "10",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.split("as job ")[1].split(";")[0]
    run_dir = tmp_path / "tiny-lucidrains"
    metrics = run_dir / "metrics.jsonl"

    def step() -> int:
        lines = metrics.read_text().splitlines() if metrics.exists() else []
        return json.loads(lines[-1])["step"] if lines else 0

    wait_until(lambda: step() >= 5, 180, "the job to reach step 5")
    assert run(["scontrol", "requeue", job_id]).returncode == 0  # what a preemption does
    wait_until(lambda: job_state(job_id, timeout=1) not in {"", "UNKNOWN", "PENDING", "RUNNING", "REQUEUED"}
               and run(["squeue", "-h", "-j", job_id]).stdout.strip() == "", 400, "the job to finish")  # fmt: skip
    assert job_state(job_id) == "COMPLETED"

    record = json.loads((tmp_path / "jobs.jsonl").read_text().splitlines()[0])
    assert (
        record["job_id"] == job_id and record["stage"] == "train-generator" and record["nodes"] == 2
    )
    text = "\n".join(p.read_text() for p in Path(record["stderr"]).parent.glob(f"{job_id}_*_log.*"))
    stopped = (
        int(text.split("stopped at step ")[1].split(";")[0]) if "stopped at step " in text else None
    )
    checkpoints = run_state.list_checkpoints(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == REQUEUE_STEPS and summary["world_size"] == 2
    assert summary["resumed_from"] is not None, text
    resumed_step = int(Path(summary["resumed_from"]).name.split("-")[1])
    assert (
        5 <= resumed_step < REQUEUE_STEPS
    )  # the step saved on the requeue signal, not a periodic checkpoint
    assert f"resumed from {summary['resumed_from']} at step {resumed_step}" in text
    if stopped is not None:  # the pre-requeue log survives when the file system keeps it
        assert stopped == resumed_step
    assert [json.loads(line)["step"] for line in metrics.read_text().splitlines()] == list(
        range(1, REQUEUE_STEPS + 1)
    )
    assert checkpoints[-1].name == run_state.step_dir_name(REQUEUE_STEPS)

    listing = synmed("jobs", "--runs", str(tmp_path))
    assert job_id in listing.stdout and "COMPLETED" in listing.stdout


def test_failed_job_is_reported_with_its_log(
    slurm: dict[str, str], tmp_path: Path, mni16: Path
) -> None:
    proc = synmed(
        "submit", "train-generator", TINY, f"data.shards={mni16}", f"run.out_dir={tmp_path}",
        "train.max_steps=40", "train.lr=1.0e+12", "train.max_grad_norm=null",
        "--cpus-per-task", "1", "--mem-gb", "2", "--partition", slurm["partition"], "--time", "5", "--wait",
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    job_id = proc.stdout.split("as job ")[1].split(";")[0]
    log = proc.stderr.split("log: ")[1].strip()
    assert f"error: job {job_id} ended FAILED" in proc.stderr
    assert "the training loss became" in Path(log).read_text()
    listing = synmed("jobs", "--runs", str(tmp_path))
    line = next(row for row in listing.stdout.splitlines() if row.startswith(job_id))
    assert "FAILED" in line and log in line


def test_array_sweep_and_dependency(slurm: dict[str, str], tmp_path: Path, mni16: Path) -> None:
    common = [TINY, f"data.shards={mni16}", f"run.out_dir={tmp_path}", "train.max_steps=2",
              "--cpus-per-task", "1", "--mem-gb", "1", "--partition", slurm["partition"], "--time", "5"]  # fmt: skip
    first = synmed("submit", "train-generator", *common, "run.name=first")
    assert first.returncode == 0, first.stderr
    first_id = first.stdout.split("as job ")[1].split(";")[0]
    swept = synmed(
        "submit",
        "train-generator",
        *common,
        "--array",
        "run.seed=0,1",
        "--after",
        first_id,
        "--wait",
        timeout=300,
    )
    assert swept.returncode == 0, swept.stdout + swept.stderr
    ids = [
        line.split("as job ")[1].split(";")[0]
        for line in swept.stdout.splitlines()
        if "as job " in line
    ]
    assert len(ids) == 2 and all(i.split("_")[0] == ids[0].split("_")[0] for i in ids)  # one array
    for seed in (0, 1):
        summary = json.loads(
            (tmp_path / f"tiny-lucidrains-seed{seed}" / "summary.json").read_text()
        )
        assert summary["steps"] == 2
    dependency = run(
        ["sacct", "-n", "-X", "-P", "-o", "JobID,Start", "-j", f"{first_id},{ids[0]}"]
    ).stdout.split()
    starts = dict(line.split("|") for line in dependency)
    first_end = run(["sacct", "-n", "-X", "-P", "-o", "End", "-j", first_id]).stdout.strip()
    assert starts[ids[0]] >= first_end  # afterok: the sweep started only once the first job ended


def test_pretrain_grid_as_a_job_array(slurm: dict[str, str], tmp_path: Path, mni16: Path) -> None:
    """Seed 001's grid is one override per element: pretrain on real, then on synthetic."""
    dino = str(REPO / "configs" / "ssl" / "tiny_dino_vit.yaml")
    proc = synmed(
        "submit", "pretrain", dino, f"pretrain.sources.real={mni16}",
        f"pretrain.sources.synthetic={mni16}", f"run.out_dir={tmp_path}", "pretrain.epochs=1",
        "--array", "pretrain.mix=real,synthetic", "--cpus-per-task", "1", "--mem-gb", "2",
        "--partition", slurm["partition"], "--time", "5", "--wait", timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for mix in ("real", "synthetic"):
        summary = json.loads((tmp_path / f"tiny-dino-vit-mix{mix}" / "summary.json").read_text())
        assert summary["mix"] == {mix: 1.0} and summary["steps"] == 13
        assert (Path(summary["export"]) / "synmed-export.json").is_file()
