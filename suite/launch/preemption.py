"""Preemption and time limits: a signal becomes a flag, the flag becomes one agreed step.

SLURM warns a job before its time limit with the signal given by ``--signal=USR2@SECONDS`` and stops
a preempted or requeued job with SIGTERM (then SIGKILL after KillWait). A handler that saved right
away would save a different step on every rank, or deadlock in a collective. So the handler only
sets a flag; the training loop folds the flag into the all-reduce it already does each step, every
rank sees the same answer after the same step, and all save that step together.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from types import FrameType

STOP_SIGNALS = (signal.SIGUSR2, signal.SIGTERM)


class PreemptionGuard:
    """Catches SIGUSR2 and SIGTERM (and, optionally, SIGINT) and remembers the first one."""

    def __init__(self, signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> None:
        self.received: signal.Signals | None = None
        self._previous = {sig: signal.signal(sig, self._handle) for sig in signals}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signal.Signals(signum)
            print(f"synmed: caught {self.received.name}; saving at the next step all ranks agree on",
                  file=sys.stderr, flush=True)  # fmt: skip

    def requested(self) -> bool:
        return self.received is not None

    @property
    def time_limit(self) -> bool:
        """SIGUSR2 is the time-limit warning: SLURM will not requeue by itself, so we must."""
        return self.received == signal.SIGUSR2

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def requeue(job_id: str) -> bool:
    """Ask SLURM to requeue this job (it must allow requeue: ``--requeue`` / JobRequeue=1)."""
    proc = subprocess.run(
        ["scontrol", "requeue", job_id], capture_output=True, text=True, timeout=60
    )
    if proc.returncode != 0:
        print(
            f"synmed: scontrol requeue {job_id} failed: {proc.stderr.strip()}",
            file=sys.stderr,
            flush=True,
        )
    return proc.returncode == 0
