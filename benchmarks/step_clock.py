"""The per-step clock of the training benchmarks (bench_train_ddpm.py, bench_train_gan.py).

A loop calls :meth:`StepClock.tick` at the end of every step; the clock keeps wall-clock and CPU
timestamps, and over the timed steps (after ``warmup``) the minor page faults, peak RSS of the
process and its reaped workers, and an optional cProfile.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import resource
import time
from typing import Any

import numpy as np


class StepClock:
    """Timestamps at the end of every step; cProfile and peak RSS over the timed steps."""

    def __init__(self, warmup: int, steps: int, profile: bool) -> None:
        self.warmup, self.steps = warmup, steps
        self.times: list[float] = []
        self.cpu: list[float] = []  # this process's CPU time (all its threads)
        self.profiler = cProfile.Profile() if profile else None
        self.peak_rss_kb = 0
        self.worker_peak_rss_kb = 0
        self.faults = [0, 0]  # minor page faults at the end of the warm-up and of the last step

    def tick(self) -> None:
        self.times.append(time.perf_counter())
        self.cpu.append(time.process_time())
        done = len(self.times)
        if done == self.warmup:
            self.faults[0] = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            if self.profiler is not None:
                self.profiler.enable()
        if done == self.steps:
            self.faults[1] = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            if self.profiler is not None:
                self.profiler.disable()
            self.peak_rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            # the workers of finished epochs (reaped); the current epoch's are still running
            self.worker_peak_rss_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss

    def result(self, batch_size: int) -> dict[str, Any]:
        timed = self.times[self.warmup - 1 : self.steps]
        cpu = self.cpu[self.warmup - 1 : self.steps]
        step_s = np.diff(timed)
        out: dict[str, Any] = {
            "images_per_s": (len(timed) - 1) * batch_size / (timed[-1] - timed[0]),
            "median_step_ms": float(np.median(step_s)) * 1e3,
            "cpu_ms_per_step": (cpu[-1] - cpu[0]) / (len(cpu) - 1) * 1e3,
            "faults_per_step": (self.faults[1] - self.faults[0]) / len(step_s),
            "step_ms": [round(float(d) * 1e3, 1) for d in np.diff(self.times)],  # steps 2..
            "peak_rss_mb": self.peak_rss_kb / 1024,
            "worker_peak_rss_mb": self.worker_peak_rss_kb / 1024,
            "profile": None,
        }
        if self.profiler is not None:
            buf = io.StringIO()
            stats = pstats.Stats(self.profiler, stream=buf).strip_dirs()
            stats.sort_stats("tottime").print_stats(25)
            stats.sort_stats("cumulative").print_stats(30)
            out["profile"] = buf.getvalue().rstrip()
        return out


def timed_generator_trainer(config: Any, overrides: list[str], clock: StepClock) -> Any:
    """The suite's generator trainer (what `synmed train generator` runs) on ``config`` with
    ``overrides``, ticking ``clock`` at the end of every step (after its EMA update)."""
    from suite.generative.train import GeneratorTrainer
    from suite.schema import load_config

    class TimedTrainer(GeneratorTrainer):
        def after_step(self) -> None:
            super().after_step()
            clock.tick()

    return TimedTrainer(load_config(config, overrides))
