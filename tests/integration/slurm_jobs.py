"""Helpers for tests that submit jobs to the real SLURM: run a command, read a job's final state."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TRAIN_SBATCH = str(REPO / "slurm" / "pretrain_ddpm.sbatch")
VENV = Path(sys.executable).parent.parent

JOB_TIMEOUT_S = 60  # upper bound for any single job of this module, queueing included
POLL_S = 0.2  # controller queries are cheap on the local rig; a slow poll is pure test time
UNFINISHED = {
    "PENDING",
    "RUNNING",
    "REQUEUED",
    "COMPLETING",
    "CONFIGURING",
    "RESIZING",
    "SUSPENDED",
}


def run(cmd: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def _current_state(job_id: str) -> str:
    # The controller first: it knows a job's end at once (and keeps it MinJobAge=300 s), while
    # accounting lags it by a few seconds and is absent on a cluster without slurmdbd.
    proc = run(["scontrol", "-o", "show", "job", job_id])
    if proc.returncode == 0:
        for item in proc.stdout.split():
            if item.startswith("JobState="):
                return item.split("=", 1)[1]
    proc = run(["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "State"])
    lines = proc.stdout.split() if proc.returncode == 0 else []
    return lines[0] if lines else ""


def job_state(job_id: str, timeout: float = 30) -> str:
    """The final state of a job (polled until it is final, or ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    while True:
        state = _current_state(job_id)
        if state and state not in UNFINISHED:
            return state
        if time.monotonic() > deadline:
            return state or "UNKNOWN"
        time.sleep(POLL_S)


def train_on_two_nodes(partition: str, chdir: Path, args: list[str], wait_s: float = 240) -> str:
    """``sbatch slurm/pretrain_ddpm.sbatch ARGS`` on two nodes (one task and CPU each, no GPU),
    waited for; returns the job's log after asserting it COMPLETED."""
    from tests.integration.helpers import wait_until

    proc = run(
        ["sbatch", "--parsable", f"--partition={partition}", f"--chdir={chdir}",
         "--nodes=2", "--gpus-per-node=0", "--ntasks-per-node=1", "--cpus-per-task=1",
         "--mem-per-cpu=2G", "--time=10",
         f"--export=ALL,SYNMED_VENV={VENV},OMP_NUM_THREADS=1,TQDM_DISABLE=1",
         TRAIN_SBATCH, *args],
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    job = proc.stdout.strip().split(";")[0]
    squeue = ["squeue", "-h", "-j", job, "-o", "%T"]
    wait_until(lambda: run(squeue).stdout.strip() == "", wait_s, f"job {job} to finish")
    log = (chdir / f"synmed-ddpm-{job}.out").read_text()
    assert job_state(job) == "COMPLETED", log
    return log
