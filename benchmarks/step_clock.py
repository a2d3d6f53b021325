"""The per-step clock of the training benchmarks (bench_train_*.py) and the helpers they share.

A loop calls :meth:`StepClock.tick` at the end of every step; the clock keeps wall-clock and CPU
timestamps, and over the timed steps (after ``warmup``) the minor page faults, peak RSS of the
process and its reaped workers, and an optional cProfile. :func:`run_script` (:func:`child_result`) runs one
loop of a benchmark in its own process, :func:`run_in_tmp` and :func:`print_result` are that
child's run and its one RESULT line; :func:`synmed` runs the CLI; :func:`pseudo_xray_shards` and
:func:`tiny_sd` make the data and the tiny Stable Diffusion the latent benchmarks share;
:func:`write_h5_shard` and :func:`check_same_images` are the bare sampling loops' shard writer and
their check against ``synmed sample``'s shards.
"""

from __future__ import annotations

import cProfile
import importlib
import io
import json
import os
import pstats
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULT = "BENCH_RESULT "  # prefix of a child's one JSON line on stdout


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


def load() -> str:
    """The load average (1, 5, 15 min)."""
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def run_script(script: str, argv: list[str], threads: int) -> dict[str, Any]:
    """Run ``script`` (a benchmark's ``--run LOOP`` child) with ``argv`` and ``threads`` OpenMP
    threads; returns the JSON of its RESULT line."""
    # one OpenMP thread by default: on 2 shared cores, 2 threads stall whenever another process
    # holds a core (bench_ssl.py's note), and the ratio then measures the load
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, str(Path(script).resolve()), *argv]
    return child_result(cmd, env, " ".join(argv[:2]))


def child_result(cmd: list[str], env: dict[str, str] | None, what: str) -> dict[str, Any]:
    """Run a child ``cmd`` (``env``; None: this process's) in the repo; the JSON of its last
    RESULT line. Its output's tail goes to stderr if it fails (``what`` names it)."""
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT)]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-6000:])
        raise RuntimeError(f"{what} failed (exit {proc.returncode})")
    return json.loads(lines[-1][len(RESULT) :])


def run_in_tmp(prefix: str, run: Callable[[Any, Any, Path], Any], args: Any, clock: Any) -> Any:
    """``run(args, clock, out_dir)`` in a temporary ``out_dir`` (removed after); what it returns."""
    out_dir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        return run(args, clock, out_dir)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def print_result(clock: StepClock, args: Any, **extra: Any) -> int:
    """The child's RESULT line: ``clock``'s figures over ``args.steps`` steps, its loop, its torch
    threads and ``extra``."""
    import torch

    if len(clock.times) != args.steps:
        raise RuntimeError(f"{args.run}: {len(clock.times)} steps timed, expected {args.steps}")
    result = clock.result(args.batch_size)
    result.update(loop=args.run, torch_threads=torch.get_num_threads(), **extra)
    print(RESULT + json.dumps(result), flush=True)
    return 0


def synmed(*argv: str) -> None:
    """``synmed ARGV`` in a subprocess, one OpenMP thread (per Ray worker, as the bare loops)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "suite", *argv], capture_output=True, text=True, cwd=REPO, env=env
    )
    if proc.returncode != 0:
        raise SystemExit(f"synmed {' '.join(argv)} failed:\n{proc.stderr[-3000:]}")


def pseudo_xray_shards(out: Path, n: int, size: int, seed: int, channels: int = 1) -> Path:
    """``n`` pseudo X-rays (``bench_shards.pseudo_xray``) as a one-split shard set in ``out``,
    the grey image repeated to ``channels``."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    pseudo_xray = importlib.import_module("bench_shards").pseudo_xray
    from suite.data.writer import ShardSetWriter

    rng = np.random.default_rng(seed)
    out.mkdir(parents=True)
    attrs = {"class_names": [], "label_kind": "none", "source": "benchmarks"}
    writer = ShardSetWriter(out, attrs, shard_size=n)
    for i in range(n):
        image = pseudo_xray(rng, size, int(rng.integers(0, 4)))
        images = np.repeat(image[None], channels, axis=0)
        writer.add({"images": images, "index": i, "split": 0})  # split 0 = "train"
    writer.close()
    return out


def tiny_sd(root: Path, image_size: int) -> Path:
    """``synmed models tiny-sd`` in ``root/tiny-sd`` (reused if there)."""
    base = root / "tiny-sd"
    if not (base / "model_index.json").is_file():
        synmed("models", "tiny-sd", "--out", str(base), "--image-size", str(image_size))
    return base


def write_h5_shard(path: Path, images: np.ndarray, start: int) -> None:
    """``images`` (rows ``start``..) with h5py as the suite's shards are laid out (one LZF chunk
    per image, an index dataset)."""
    import h5py

    with h5py.File(path, "w") as h5:
        h5.create_dataset("images", data=images, chunks=(1, *images.shape[1:]), compression="lzf")
        h5.create_dataset("index", data=np.arange(start, start + len(images), dtype=np.int64))


def check_same_images(bare: Path, ray: Path, tolerance: int = 0) -> None:
    """Both loops made the same images (the same rows from the same (seed, index) noise), to
    ``tolerance`` grey levels."""
    import h5py

    files = sorted(p.name for p in bare.glob("shard-*.h5"))
    assert files == sorted(p.name for p in ray.glob("shard-*.h5")), files
    for name in files:
        with h5py.File(bare / name) as a, h5py.File(ray / name) as b:
            assert np.array_equal(a["index"][:], b["index"][:]), name
            diff = np.abs(a["images"][:].astype(np.int16) - b["images"][:].astype(np.int16))
            assert diff.max() <= tolerance, (name, int(diff.max()))


def script_train_overrides(args: Any, adamw: dict[str, Any]) -> list[str]:
    """The suite's ``train:`` section set to a diffusers example script's loop (the LoRA and
    ControlNet scripts alike): ``args``' batch, steps, lr and log interval, AdamW as ``adamw``,
    constant lr, clip 1.0, fp32, and no EMA, checkpoint or preview within the run."""
    never = args.steps + 1
    return [
        f"train.batch_size={args.batch_size}",
        "train.grad_accum=1",
        f"train.max_steps={args.steps}",
        f"train.lr={args.lr:.6e}",  # with a dot: YAML reads 1e-4 as a string
        f"train.adam_betas=[{adamw['betas'][0]}, {adamw['betas'][1]}]",
        f"train.weight_decay={adamw['weight_decay']:.1e}",
        "train.lr_schedule=constant",
        "train.warmup_steps=0",
        "train.max_grad_norm=1.0",
        "train.mixed_precision='no'",  # YAML reads a bare no as false
        f"train.ema_update_every={never}",  # the scripts have no EMA
        f"train.ema_update_after_step={never}",
        "train.num_workers=0",
        f"train.log_every={args.log_every}",
        f"train.checkpoint_every={never}",
        f"train.sample_every={never}",
    ]
