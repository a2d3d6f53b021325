"""Sampling an ``sd_lora`` export through Ray (``synmed sample``) against a bare
``StableDiffusionPipeline`` loop with the same LoRA file, in one command.

Run by hand (not a test)::

    .venv/bin/python benchmarks/bench_sample_sd_lora.py

The export: LoRA on the tiny pipeline of ``synmed models tiny-sd``, trained briefly through
``synmed train generator`` on ``configs/generator/tiny_sd_lora.yaml`` with
``bench_train_sd_lora.py``'s overrides on 3x32x32 pseudo X-rays (the grey image in three
channels) with ``model.channels=3``, so the suite's images are RGB as the pipeline's.

Same for both: one prompt and the empty negative prompt for every image, classifier-free
guidance, DDIM with the same number of steps (the suite's DDIM: SD's schedule, x0 unclipped,
alpha_T = 1), batch, image count, shards of the same size, one torch thread. ``synmed sample
--workers 1`` runs the suite's sampling job on a local Ray (one actor). The bare loop runs in
this process: ``StableDiffusionPipeline.from_pretrained`` of the base folder,
``load_lora_weights`` of the export's ``pytorch_lora_weights.safetensors``, then per batch
``pipe(prompts, negative_prompt=..., latents=..., num_inference_steps, guidance_scale,
output_type="np")`` with each image's initial noise from (seed, index) as the suite draws it,
each shard written with h5py in the suite's layout.

Timing, the same for both: from the first shard begun to the last shard written. Ray's start-up,
the actor's and the pipeline's model load (and LoRA load) are left out: the suite's figure is its
``sample_summary.json`` ``steady_images_per_s``; the bare loop's clock starts after
``load_lora_weights``. Rounds alternate the order; medians; the first round checks both made the
same images (to two grey levels: rounding and the CFG batch order). Goal >= 0.95x.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import report  # benchmarks/report.py: a script's folder is on sys.path
from step_clock import (  # benchmarks/step_clock.py: a script's folder is on sys.path
    load,
    pseudo_xray_shards,
    synmed,
    tiny_sd,
    write_h5_shard,
)

LORA_WEIGHTS = "pytorch_lora_weights.safetensors"
PROMPT = "a chest x-ray"


def train_export(args: argparse.Namespace, root: Path) -> Path:
    """A briefly trained sd_lora run (its export), trained through ``synmed train generator``."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    train = importlib.import_module("bench_train_sd_lora")
    settings = argparse.Namespace(**{**vars(args), "steps": args.train_steps, "log_every": 1})
    # the config's EMA (every step), so the export holds trained adapters
    overrides = [
        o
        for o in train.suite_overrides(settings, root, root / "runs")
        if not o.startswith(("train.ema_", "train.max_steps", "model.channels"))
    ]
    # RGB, as the pipeline's output: a grey model's channel mean is taken before the clamp to
    # [0, 1], the pipeline's after, so their images would differ
    overrides.append("model.channels=3")
    synmed("train", "generator", str(train.BASE_CONFIG), *overrides,
           f"train.max_steps={args.train_steps}")  # fmt: skip
    return root / "runs" / "bench"


def bare_sampling(args: argparse.Namespace, base: Path, run: Path, out: Path) -> float:
    """images/s of a StableDiffusionPipeline with the export's LoRA, batch by batch into h5py
    shards; the clock starts after the pipeline and the LoRA file are loaded."""
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    from suite.generative.base import noise_generators

    torch.set_num_threads(1)
    pipe = StableDiffusionPipeline.from_pretrained(base, local_files_only=True)
    # the suite's DDIM (suite/generative/diffusion.py): x0 unclipped, alpha_T = 1
    pipe.scheduler = DDIMScheduler.from_pretrained(
        base, subfolder="scheduler", clip_sample=False, set_alpha_to_one=True
    )
    pipe.load_lora_weights(run / "export", weight_name=LORA_WEIGHTS)
    pipe.set_progress_bar_config(disable=True)
    latent_side = args.image_size // pipe.vae_scale_factor
    shape = (pipe.unet.config.in_channels, latent_side, latent_side)
    n, batch, shard = args.images, args.batch_size, args.shard_size
    out.mkdir(parents=True)
    t0 = time.perf_counter()
    for number, start in enumerate(range(0, n, shard)):
        stop = min(start + shard, n)
        parts = []
        for s in range(start, stop, batch):
            indices = range(s, min(s + batch, stop))
            latents = torch.stack([torch.randn(shape, generator=g)
                                   for g in noise_generators(args.seed, indices)])  # fmt: skip
            images = pipe([PROMPT] * len(indices), negative_prompt=[""] * len(indices),
                          latents=latents, num_inference_steps=args.steps, height=args.image_size,
                          width=args.image_size, guidance_scale=args.guidance_scale,
                          output_type="np").images  # fmt: skip
            parts.append((images.transpose(0, 3, 1, 2) * 255).round().astype(np.uint8))
        write_h5_shard(out / f"shard-{number:05d}.h5", np.concatenate(parts), start)
    return n / (time.perf_counter() - t0)


def ray_sampling(args: argparse.Namespace, run: Path, out: Path) -> dict:
    synmed("sample", "--checkpoint", str(run), "--num-images", str(args.images),
           "--shard-size", str(args.shard_size), "--batch-size", str(args.batch_size),
           "--sampler", "ddim", "--sampling-steps", str(args.steps), "--guidance-scale",
           str(args.guidance_scale), "--prompt", PROMPT, "--negative-prompt", "",
           "--seed", str(args.seed), "--workers", "1", "--out", str(out))  # fmt: skip
    return json.loads((out / "sample_summary.json").read_text())


def bench(args: argparse.Namespace, root: Path, base: Path, run: Path) -> None:
    print(
        f"sampling: tiny SD + LoRA trained {args.train_steps} steps, {args.images} images "
        f"3x{args.image_size}x{args.image_size}, DDIM {args.steps} steps, guidance "
        f"{args.guidance_scale}, batch {args.batch_size}, shards of {args.shard_size}, 1 worker, "
        "1 thread"
    )
    print(f"load average at start (1, 5, 15 min; {os.cpu_count()} CPUs): {load()}")
    rates = report.sampling_rounds(
        root,
        args.rounds,
        lambda out: bare_sampling(args, base, run, out),
        lambda out: ray_sampling(args, run, out),
        tolerance=2,
    )
    print("  both made the same images into the same shards (to 2 grey levels; round 1)")
    labels = ("bare StableDiffusionPipeline + h5py  ", "synmed sample, 1 Ray worker          ")
    report.print_sampling(rates, labels, ".2f", ".2f", "Ray start-up and model load")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-images", type=int, default=64, help="training images")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--rank", type=int, default=4, help="LoRA rank (alpha the same)")
    parser.add_argument("--train-steps", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--images", type=int, default=256, help="images sampled per run")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--shard-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="DDIM steps")
    parser.add_argument("--guidance-scale", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each; medians")
    parser.add_argument("--keep", type=Path, help="write the data here and keep it (or reuse it)")
    args = parser.parse_args(argv)

    os.environ.setdefault("TQDM_DISABLE", "1")
    with report.bench_root("bench_sample_sd_lora-", args.keep) as root:
        start = time.perf_counter()
        if not (root / "shards" / "manifest.json").is_file():
            pseudo_xray_shards(root / "shards", args.num_images, args.image_size, args.seed, 3)
        base = tiny_sd(root, args.image_size)
        shutil.rmtree(root / "runs", ignore_errors=True)
        run = train_export(args, root)
        print(f"data, tiny SD and the export made in {time.perf_counter() - start:.1f} s\n")
        bench(args, root, base, run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
