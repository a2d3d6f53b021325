"""Helpers for tests that submit jobs to the real SLURM: run a command, read a job's final state."""

from __future__ import annotations

import subprocess
import time

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
