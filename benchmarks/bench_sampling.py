"""Sampling throughput and quality, in one command on one trained tiny model.

    .venv/bin/python benchmarks/bench_sampling.py                 # trains the model first (~3 min)
    .venv/bin/python benchmarks/bench_sampling.py --checkpoint runs/x   # or use a trained run

(a) images/s of `synmed sample` (Ray Data actor pool + HDF5 shards) against a bare in-process loop
    over the same model, batch and sampler; the Ray figure is steady state (first shard begun to last
    shard written), Ray's start-up is reported apart. Goal >= 0.95x.
(b) 1 vs 2 Ray workers (scaling efficiency = rate2 / (2 x rate1)); each worker gets one thread.
(c) images/s of the 1000-step DDPM vs DDIM 50, DPM-Solver++(2M) 20 and the few-step samplers
    DPM-Solver++(3M) and UniPC at 10 and 8 steps, and the Fréchet distance of each set to the real
    training images on one encoder (default: the FID Inception network). Goal for a sampler of
    <= 10 steps: >= 100x faster than DDPM at a distance within +10% of DDPM's (each row says
    whether it meets it).

Numbers from a 2-core machine shared with other work are noisy; the ratios matter, not the rates.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def synmed(*args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "suite", *args], capture_output=True, text=True, env=os.environ
    )
    if proc.returncode != 0:
        raise SystemExit(f"synmed {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return {}


def train_model(work: Path, steps: int) -> Path:
    """A small lucidrains DDPM with 1000 timesteps on real MNI152 slices (16 px)."""
    from suite.data.demo import resolve_source
    from suite.data.ingest.options import IngestOptions
    from suite.data.ingest.pipeline import ingest

    path, defaults = resolve_source("demo:mni152")
    ingest(path, work / "real", IngestOptions(**{**defaults, "image_size": 16}), progress=False)
    synmed("train", "generator", str(REPO / "configs/generator/tiny_lucidrains.yaml"), f"data.shards={work / 'real'}",
           f"run.out_dir={work}", "run.name=bench", "model.timesteps=1000", "model.dim=16",
           f"train.max_steps={steps}", "train.lr=2.0e-4", "train.batch_size=16", "train.checkpoint_every=100000",
           "train.sample_every=100000", "train.ema_update_after_step=20")  # fmt: skip
    return work / "bench"


def bare_rate(
    checkpoint: Path, n: int, batch: int, sampler: str, steps: int
) -> tuple[float, np.ndarray]:
    from suite.generative.base import SampleOptions
    from suite.generative.export import load_generator

    torch.set_num_threads(1)
    model, _ = load_generator(checkpoint)
    options = SampleOptions(sampler=sampler, steps=steps)
    t0 = time.perf_counter()
    out = [model.sample(range(s, min(s + batch, n)), 0, None, options).images
           for s in range(0, n, batch)]  # fmt: skip
    return n / (time.perf_counter() - t0), np.concatenate(out)


def ray_run(
    checkpoint: Path, out: Path, n: int, batch: int, sampler: str, steps: int, workers: int
) -> dict:
    synmed("sample", "--checkpoint", str(checkpoint), "--num-images", str(n), "--shard-size", str(batch * 4),
           "--batch-size", str(batch), "--sampler", sampler, "--sampling-steps", str(steps),
           "--workers", str(workers), "--out", str(out))  # fmt: skip
    return json.loads((out / "sample_summary.json").read_text())


def features(images: np.ndarray, encoder: str) -> np.ndarray:
    from suite.features.encoders import build_encoder

    model = build_encoder(encoder)
    with torch.no_grad():
        return np.concatenate(
            [model(torch.from_numpy(images[s : s + 32])).numpy() for s in range(0, len(images), 32)]
        )


def real_images(shards: Path) -> np.ndarray:
    from suite.data.dataset import ShardDataset

    data = ShardDataset(shards, split="train")
    return np.stack([data[i]["image"].numpy() for i in range(len(data))])


# (c)'s rows: the reference first, then the usual few-step samplers, then the <= 10-step ones
SAMPLERS = [("ddpm", 1000), ("ddim", 50), ("dpm-solver", 20), ("dpm-solver-3m", 10),
            ("unipc", 10), ("dpm-solver-3m", 8), ("unipc", 8)]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="a trained run (default: train one here)")
    parser.add_argument("--train-steps", type=int, default=1500)
    parser.add_argument("--images", type=int, default=256, help="images for (a) and (b)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--quality-images", type=int, default=200, help="images per sampler for (c)"
    )
    parser.add_argument("--encoder", default="inception")
    parser.add_argument(
        "--real", type=Path, help="real shard set for (c) (default: the one trained on)"
    )
    parser.add_argument("--work", type=Path)
    parser.add_argument(
        "--only", choices=("throughput", "quality"), help="run (a)+(b), or only (c)"
    )
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-sampling-"))
    checkpoint = args.checkpoint or train_model(work, args.train_steps)
    if args.checkpoint is None:
        print(f"trained {checkpoint} ({args.train_steps} steps, 16 px, 1000 timesteps)")

    n, b = args.images, args.batch_size
    if args.only != "quality":
        throughput(checkpoint, work, n, b)
    if args.only != "throughput":
        quality(checkpoint, work, args)


def throughput(checkpoint: Path, work: Path, n: int, b: int) -> None:
    # (a) Ray pipeline + HDF5 vs a bare loop, DDIM 50
    bare, _ = bare_rate(checkpoint, n, b, "ddim", 50)
    one = ray_run(checkpoint, work / "a1", n, b, "ddim", 50, 1)
    two = ray_run(checkpoint, work / "a2", n, b, "ddim", 50, 2)
    print(f"\n(a) pipeline vs bare loop (DDIM 50, batch {b}, {n} images, 1 thread per worker)")
    print(f"  bare in-process loop       {bare:8.1f} images/s")
    print(f"  synmed sample, 1 worker    {one['steady_images_per_s']:8.1f} images/s steady "
          f"({one['images_per_s']:.1f} end to end: {one['wall_seconds'] - one['sampling_seconds']:.1f} s Ray start-up)")  # fmt: skip
    print(f"  ratio ray/bare: {one['steady_images_per_s'] / bare:.2f}x (goal >= 0.95x)")
    # (b) scaling
    eff = two["steady_images_per_s"] / (2 * one["steady_images_per_s"])
    print("\n(b) scaling")
    print(f"  1 worker {one['steady_images_per_s']:.1f}, 2 workers {two['steady_images_per_s']:.1f} images/s: "
          f"efficiency {eff:.2f} (2 cores; the driver and Ray share them)")  # fmt: skip


def quality(checkpoint: Path, work: Path, args: argparse.Namespace) -> None:
    # (c) samplers: speed and Fréchet distance to the real training images
    q, b = args.quality_images, args.batch_size
    if args.real is None and args.checkpoint is not None:
        raise SystemExit(
            "--real SHARDS is needed with --checkpoint (the data the model was trained on)"
        )
    real = features(real_images(args.real or work / "real"), args.encoder)
    from suite.evaluation.frechet import FeatureStats, frechet_distance

    real_stats = FeatureStats.of(real)
    rows = []
    for sampler, steps in SAMPLERS:
        rate, images = bare_rate(checkpoint, q, b, sampler, steps)
        fd = frechet_distance(FeatureStats.of(features(images, args.encoder)), real_stats)
        rows.append((sampler, steps, rate, fd))
    base_rate, base_fd = rows[0][2], rows[0][3]
    print(
        f"\n(c) samplers ({q} images each; Fréchet distance on {args.encoder} to {len(real)} real images)"
    )
    for sampler, steps, rate, fd in rows:
        speedup, worse = rate / base_rate, fd / base_fd - 1
        goal = ""
        if steps <= 10:
            met = speedup >= 100 and worse <= 0.10
            goal = f"  goal >= 100x within +10%: {'met' if met else 'not met'}"
        print(f"  {sampler:<14}{steps:>5} steps {rate:8.2f} images/s  {speedup:6.1f}x  "
              f"FD {fd:9.2f}  ({worse * 100:+.1f}% vs DDPM){goal}")  # fmt: skip


if __name__ == "__main__":
    main()
