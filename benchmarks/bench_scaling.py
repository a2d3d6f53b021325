"""How cost grows with work: Ray sampling into shards for 1k, 4k and 16k images and k-means
clustering for 10k, 40k and 120k feature rows, timed on this machine, with the cost per image and
a projection for 120k images.

    .venv/bin/python benchmarks/bench_scaling.py                 # about 10 minutes on 2 cores
    .venv/bin/python benchmarks/bench_scaling.py --tiny          # a dry pass

Sampling: ``synmed sample`` (Ray Data, 1 worker, verified HDF5 shards, the path a user runs) from
an untrained export (``synmed generator init``; speed does not depend on the weights) of the DCGAN
of configs/generator/tiny_dcgan.yaml at 32 px, for each count; and the small recipes' DDPM
(configs/papers/i-synmed/small.yaml's model: dim 16, 32 px, DPM-Solver++ 20 steps) at
``--ddpm-images``, for its cost per image. Each count's time is the job's wall time (Ray's
start-up included) and its steady rate (first shard begun to last shard written). Clustering:
``suite.features.cluster.cluster_features`` (k-means, k = 5, 3 restarts, as seed 004) on rows drawn
from a mixture of 5 Gaussians in 384 dimensions (DINO ViT-S/16's feature width).

The peer of each row is the smallest count of its stage: ``per-item vs first`` is the cost per
image (or row) over that of the smallest count, 1.00 for work that grows linearly. The projection
multiplies the largest count's steady cost per image by 120,000 and divides it by N workers of
this machine's speed, assuming each worker has its own device (benchmarks/recipe_cost.py projects
the same stages in FLOPs onto GPUs).
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DCGAN = REPO / "configs" / "generator" / "tiny_dcgan.yaml"
DDPM = REPO / "configs" / "generator" / "tiny_lucidrains.yaml"
# the small recipes' DDPM (configs/papers/i-synmed/small.yaml, generator.model)
DDPM_SMALL = ("model.image_size=32", "model.dim=16", "model.dim_mults=[1,2,4]",
              "model.timesteps=500")  # fmt: skip


def synmed(*args: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "suite", *args], capture_output=True, text=True, cwd=REPO
    )
    if proc.returncode != 0:
        raise SystemExit(f"synmed {' '.join(args)} failed:\n{proc.stderr[-3000:]}")


def export(config: Path, out: Path, *overrides: str) -> Path:
    synmed("generator", "init", str(config), *overrides, "--out", str(out))
    return out


def sample(checkpoint: Path, out: Path, n: int, batch: int, *extra: str) -> tuple[float, float]:
    """(wall seconds of the job, its steady images/s)."""
    start = time.perf_counter()
    synmed("sample", "--checkpoint", str(checkpoint), "--num-images", str(n), "--batch-size",
           str(batch), "--shard-size", str(max(batch, n // 8)), "--workers", "1", "--out",
           str(out), *extra)  # fmt: skip
    wall = time.perf_counter() - start
    summary = json.loads((out / "sample_summary.json").read_text())
    return wall, summary.get("steady_images_per_s") or summary["images_per_s"]


def mixture(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(5, dim)).astype(np.float32)
    return centres[rng.integers(0, 5, n)] + rng.normal(scale=0.7, size=(n, dim)).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tiny", action="store_true", help="small counts: a dry pass")
    p.add_argument("--images", type=int, nargs="+", default=[1000, 4000, 16000])
    p.add_argument("--rows", type=int, nargs="+", default=[10_000, 40_000, 120_000])
    p.add_argument("--ddpm-images", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=256, help="images per DCGAN call")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 8, 32], help="for the projection")
    args = p.parse_args(argv)
    if args.tiny:
        args.images, args.rows, args.ddpm_images = [64, 128], [500, 1000], 8
    from suite.features.cluster import cluster_features

    rows: list[tuple[str, int, float, float]] = []  # stage, count, seconds, per-item seconds
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as tmp:
        root = Path(tmp)
        gan = export(DCGAN, root / "dcgan", "model.image_size=32")
        steady: dict[str, float] = {}
        for n in args.images:
            wall, rate = sample(gan, root / f"gan-{n}", n, args.batch_size)
            rows.append(("sampling, DCGAN 32 px (Ray, 1 worker)", n, wall, 1 / rate))
            steady["DCGAN 32 px"] = 1 / rate
        ddpm = export(DDPM, root / "ddpm", *DDPM_SMALL)
        wall, rate = sample(ddpm, root / "ddpm-out", args.ddpm_images, 100, "--sampler",
                            "dpm-solver", "--sampling-steps", "20")  # fmt: skip
        rows.append(
            ("sampling, small DDPM 32 px, DPM-Solver++ 20", args.ddpm_images, wall, 1 / rate)
        )
        steady["small DDPM 32 px, DPM-Solver++ 20"] = 1 / rate
        cluster_features(mixture(200, 384, seed=1), 5, seed=0)  # imports and first-call set-up
        for n in args.rows:
            features = mixture(n, 384, seed=0)
            start = time.perf_counter()
            cluster_features(features, 5, seed=0, representatives=25)
            seconds = time.perf_counter() - start
            rows.append(("k-means k=5, 384-d features", n, seconds, seconds / n))

    print(f"{os.cpu_count()} CPUs, {os.environ['OMP_NUM_THREADS']} torch thread(s) per process\n")
    print("| stage | count | seconds | per item (ms) | per-item vs first |")
    print("|---|---|---|---|---|")
    first: dict[str, float] = {}
    for stage, n, seconds, per_item in rows:
        base = first.setdefault(stage, per_item)
        steady_note = " (steady)" if stage.startswith("sampling") else ""
        print(f"| {stage} | {n} | {seconds:.1f} | {per_item * 1e3:.3f}{steady_note} | "
              f"{per_item / base:.2f} |")  # fmt: skip
    print("\nprojection for 120,000 images at the steady cost per image, N workers of this speed:")
    print("| sampler | " + " | ".join(f"{w} worker(s), h" for w in args.workers) + " |")
    print("|---|" + "---|" * len(args.workers))
    for name, per_image in steady.items():
        hours = [120_000 * per_image / w / 3600 for w in args.workers]
        print(f"| {name} | " + " | ".join(f"{h:.2f}" for h in hours) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
