"""Run a trainer the same way under every launcher: in-process, accelerate launch, srun, Submitit."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol

from suite.launch.env import detect
from suite.launch.preemption import PreemptionGuard, requeue


class Trainer(Protocol):
    def fit(self, stop_requested: Callable[[], bool] | None = None) -> dict[str, Any]: ...


def run_training(build: Callable[[], Trainer]) -> dict[str, Any]:
    """Export the SLURM layout, build the trainer, train with a preemption guard, requeue if needed.

    Under SLURM (sbatch + srun, or a Submitit job) the task's rank, world size and rendezvous come
    from SLURM's variables; under accelerate launch / torchrun from theirs. On SIGTERM or SIGUSR2
    every rank saves the same step; after a SIGUSR2 (the time-limit warning) rank 0 requeues the job,
    since SLURM requeues by itself only on preemption.
    """
    dist = detect()
    if dist.source == "slurm":
        dist.export()
    guard = PreemptionGuard()
    try:
        result = build().fit(stop_requested=guard.requested)
    finally:
        guard.restore()
    job_id = os.environ.get("SLURM_JOB_ID")
    if result.get("stopped_at") is not None and guard.time_limit and dist.rank == 0 and job_id:
        requeue(
            os.environ.get("SLURM_ARRAY_JOB_ID", job_id)
            if "SLURM_ARRAY_TASK_ID" not in os.environ
            else job_id
        )
    return result
