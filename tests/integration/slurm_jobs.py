"""Helpers for tests that submit jobs to the real SLURM: run a command, read a job's final state."""

from __future__ import annotations

import subprocess
import time

JOB_TIMEOUT_S = 60  # upper bound for any single job of this module, queueing included
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


def job_state(job_id: str, timeout: float = 30) -> str:
    """The final state of a job, from sacct (accounting lags the controller a little, so poll).

    Falls back to ``scontrol show job`` (finished jobs stay there for MinJobAge=300 s) when the
    cluster runs without accounting.
    """
    deadline = time.monotonic() + timeout
    state = ""
    while True:
        proc = run(["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "State"])
        if proc.returncode == 0:
            lines = proc.stdout.split()
            state = lines[0] if lines else ""
        elif "accounting storage is disabled" in proc.stderr:
            proc = run(["scontrol", "-o", "show", "job", job_id])
            fields = dict(f.split("=", 1) for f in proc.stdout.split() if "=" in f)
            state = fields.get("JobState", "")
        if state and state not in UNFINISHED:
            return state
        if time.monotonic() > deadline:
            return state or "UNKNOWN"
        time.sleep(0.5)
