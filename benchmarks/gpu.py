"""Every speed benchmark at realistic sizes on a CUDA machine, in one command under 8 minutes.

    .venv/bin/python benchmarks/gpu.py              # a CUDA machine: the papers' sizes
    .venv/bin/python benchmarks/gpu.py --dry        # any machine: tiny sizes, every path once

Runs, one subprocess each, in this order and with the sizes below:

- bench_flops.py: model FLOP/s over the same GPU's dense fp32 matmul FLOP/s for the sampling call
  of the I-SynMed DDPM (256 px), medcls' DCGAN and ACGAN (224 px), an SD 1.5-shaped UNet (the
  LoRA family, 512 px) and the SSL steps of DINO ViT-S/16 and SimCLR ResNet-18 (224 px), with the
  levers (inference mode, channels_last, bf16 autocast);
- bench_train_ddpm.py: the I-SynMed DDPM (256 px, dim 64) step against lucidrains' Trainer;
- bench_ssl.py: DINO ViT-S/16 at 224 px with 6 local 96 px crops against lightly's loop;
- bench_train_gan.py: DCGAN training against pytorch/examples' loop, and its Ray sampling against
  a bare loop;
- bench_train_sd_lora.py: the LoRA step against diffusers' example script's loop;
- bench_shards.py: the shard reader against a PNG ImageFolder with 2 DataLoader workers.

Each prints its own images/s, ratios and FLOP/s fractions; this script prints their output under
one heading each, then the wall time of each. A benchmark that fails or passes its time limit is
reported as such and makes the exit status 1; the others still run. Without a GPU, ``--dry`` runs
the same list at tiny sizes (tests/integration/test_gpu_benchmark.py runs it), so the command a GPU
session runs has been through every path on a CPU first.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Bench:
    script: str
    gpu: tuple[str, ...]  # arguments at realistic sizes (a CUDA machine)
    dry: tuple[str, ...]  # arguments at tiny sizes (any machine, seconds)
    limit_s: int  # on the GPU; the dry pass allows each 300 s


ONE_ROUND = ("--rounds", "1", "--profile", "never")

BENCHES = [
    Bench("bench_flops.py", ("--sizes", "paper", "--levers", "--repeats", "3"),
          ("--sizes", "tiny", "--levers", "--repeats", "1"), 120),
    Bench("bench_train_ddpm.py",
          # lucidrains' Trainer refuses an effective batch below 16 (the recipe: 8 x 2 accumulated)
          # and a folder of fewer than 100 images
          ("--num-images", "256", "--image-size", "256", "--dim", "64", "--batch-size", "16",
           "--steps", "40", "--warmup", "10", *ONE_ROUND),
          ("--num-images", "100", "--image-size", "16", "--dim", "8", "--batch-size", "16",
           "--steps", "3", "--warmup", "1", *ONE_ROUND), 60),
    Bench("bench_ssl.py",
          ("--arch", "vit_small", "--image-size", "224", "--local-size", "96", "--n-local", "6",
           "--patch-size", "16", "--batch-size", "32", "--steps", "30", "--warmup", "10",
           "--num-images", "1024", "--workers", "8", *ONE_ROUND),
          ("--arch", "vit_tiny", "--image-size", "16", "--local-size", "8", "--n-local", "2",
           "--patch-size", "4", "--batch-size", "4", "--steps", "3", "--warmup", "1",
           "--num-images", "32", "--workers", "0", *ONE_ROUND), 80),
    Bench("bench_train_gan.py",
          ("--num-images", "1024", "--image-size", "64", "--batch-size", "128", "--steps", "40",
           "--warmup", "10", "--workers", "4", "--sample-train-steps", "5", "--sample-images",
           "20000", "--sample-batch", "1024", "--shard-size", "2000", *ONE_ROUND),
          ("--num-images", "16", "--image-size", "16", "--ngf", "8", "--ndf", "8",
           "--batch-size", "4", "--steps", "3", "--warmup", "1", "--workers", "0",
           "--sample-train-steps", "2", "--sample-images", "32", "--sample-batch", "16",
           "--shard-size", "16", *ONE_ROUND), 80),
    Bench("bench_train_sd_lora.py",
          ("--num-images", "256", "--image-size", "256", "--batch-size", "8", "--steps", "30",
           "--warmup", "10", *ONE_ROUND),
          ("--num-images", "8", "--image-size", "16", "--batch-size", "2", "--steps", "3",
           "--warmup", "1", *ONE_ROUND), 50),
    Bench("bench_shards.py",
          ("--num-images", "4000", "--image-size", "256", "--batch-size", "64", "--workers", "2",
           "--profile", "never"),
          ("--num-images", "32", "--image-size", "16", "--batch-size", "8", "--workers", "1",
           "--shard-size", "16", "--profile", "never"), 60),
]  # fmt: skip


def run(bench: Bench, dry: bool) -> tuple[str, float, str]:
    """One benchmark in its own process (its data in its own temporary folder, removed when it
    ends): (status, seconds, its output)."""
    argv = [sys.executable, str(HERE / bench.script), *(bench.dry if dry else bench.gpu)]
    env = dict(os.environ, TQDM_DISABLE="1")
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=300 if dry else bench.limit_s,
            env=env,
            cwd=HERE.parent,
        )
    except subprocess.TimeoutExpired as err:
        out = (err.stdout or b"").decode() if isinstance(err.stdout, bytes) else err.stdout or ""
        return "timed out", time.perf_counter() - start, out
    seconds = time.perf_counter() - start
    status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
    output = proc.stdout if proc.returncode == 0 else proc.stdout + proc.stderr[-4000:]
    return status, seconds, output


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dry", action="store_true", help="tiny sizes on any device (a dry pass)")
    p.add_argument("--only", nargs="+", metavar="SCRIPT", help="run these of the list only")
    args = p.parse_args(argv)
    import torch

    if not args.dry and not torch.cuda.is_available():
        p.error("no CUDA device here: pass --dry for the tiny-size pass")
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    benches = [b for b in BENCHES if not args.only or b.script in args.only]
    unknown = set(args.only or ()) - {b.script for b in BENCHES}
    if unknown:
        p.error(f"not in the list: {sorted(unknown)}; choose from {[b.script for b in BENCHES]}")
    print(f"benchmarks/gpu.py on {device} ({'dry pass, tiny sizes' if args.dry else 'realistic'})")
    rows: list[tuple[str, str, float]] = []
    for bench in benches:
        status, seconds, output = run(bench, args.dry)
        print(f"\n## {bench.script} ({status}, {seconds:.0f} s)\n\n{output.rstrip()}", flush=True)
        rows.append((bench.script, status, seconds))
    print("\n| benchmark | status | seconds |\n|---|---|---|")
    for script, status, seconds in rows:
        print(f"| {script} | {status} | {seconds:.0f} |")
    print(f"| total | | {sum(r[2] for r in rows):.0f} |")
    return 0 if all(status == "ok" for _, status, _ in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
