"""Training speed and peak memory of the suite's generator loop (``GeneratorTrainer``) against
denoising-diffusion-pytorch's own ``Trainer`` on the same model, data, batch and number of steps.

Run by hand (not a test)::

    .venv/bin/python benchmarks/bench_train_ddpm.py

Same for both: ``Unet(dim, dim_mults=(1, 2, 4), channels=1)`` in ``GaussianDiffusion(timesteps=1000,
pred_v, sigmoid)``, the same generated pseudo chest X-rays (PNGs for the Trainer, a shard set for
the suite), batch, Adam lr and betas (0.9, 0.99), grad-norm clip 1.0, EMA 0.995 every 10 steps after
step 100, no AMP, ``cpu_count()`` DataLoader workers (the Trainer's fixed choice), no horizontal flip
(the Trainer's default flip is turned off to match the suite's). The suite runs
``configs/generator/tiny_lucidrains.yaml`` with the printed overrides; neither loop samples or
saves inside the timed part.

Timing: one clock, read at the end of every optimizer step in both loops (the suite's ``after_step`` and
the Trainer's ``ema.update`` are wrapped here; no suite or library code is changed). images/s is
over steps ``warmup+1..steps``: data waits, logging and the epoch-boundary worker restart count,
start-up and the suite's post-training work (final preview, checkpoint, export) do not. Each loop
runs in its own subprocess (``--run``), so ``ru_maxrss`` (read at the end of the timed steps) is
that loop's peak RSS; DataLoader workers are shown apart. Rounds alternate the order; medians.
``faults/step`` (minor page faults of the training process per timed step) does not depend on the
machine's load: it shows memory that malloc hands back to the OS and faults in again every step.
"""

from __future__ import annotations

import argparse
import importlib
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import report  # benchmarks/report.py: a script's folder is on sys.path
from PIL import Image
from step_clock import (
    StepClock,
    child_result,
    load,
    print_result,
    run_in_tmp,
    timed_generator_trainer,
)

REPO = Path(__file__).resolve().parents[1]
BASE_CONFIG = REPO / "configs" / "generator" / "tiny_lucidrains.yaml"
LOOPS = ("suite", "lucidrains")


# --------------------------------------------------------------------------------------------------
# data


def make_data(root: Path, n: int, size: int, seed: int) -> tuple[Path, Path]:
    """Write ``n`` pseudo X-rays (``bench_shards.pseudo_xray``) as PNGs and as a one-split shard set."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    pseudo_xray = importlib.import_module("bench_shards").pseudo_xray
    from suite.data.writer import ShardSetWriter

    rng = np.random.default_rng(seed)
    png_dir, shard_dir = root / "png", root / "shards"
    png_dir.mkdir(parents=True)
    shard_dir.mkdir()
    attrs = {"class_names": [], "label_kind": "none", "source": "bench_train_ddpm"}
    writer = ShardSetWriter(shard_dir, attrs, shard_size=n)
    for i in range(n):
        image = pseudo_xray(rng, size, int(rng.integers(0, 4)))
        Image.fromarray(image, "L").save(png_dir / f"{i:06d}.png")
        writer.add({"images": image[None], "index": i, "split": 0})  # split 0 = "train"
    writer.close()
    return png_dir, shard_dir


def check_same(png_dir: Path, shard_dir: Path, size: int) -> None:
    """The Trainer's dataset and the suite's must yield the same float images in [0, 1]."""
    from denoising_diffusion_pytorch.denoising_diffusion_pytorch import Dataset as FolderDataset

    from suite.data.dataset import ShardDataset
    from suite.data.transforms import to_float

    folder = FolderDataset(str(png_dir), size, convert_image_to="L")
    shards = ShardDataset(shard_dir, split="train", transform=to_float, verify="size")
    assert len(folder) == len(shards), (len(folder), len(shards))
    row_of = {int(index): row for row, index in enumerate(shards.indices)}
    for k in range(0, len(folder), max(1, len(folder) // 8)):
        a = folder[k]
        b = shards[row_of[int(Path(folder.paths[k]).stem)]]["image"]
        assert a.shape == b.shape and float((a - b).abs().max()) < 1e-6, folder.paths[k]


# --------------------------------------------------------------------------------------------------
# one loop (child process)


def current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def suite_overrides(args: argparse.Namespace, shard_dir: Path, out_dir: Path) -> list[str]:
    """Overrides on ``tiny_lucidrains.yaml`` that make the suite's run the Trainer's."""
    never = args.steps + 1
    return [
        f"data.shards={shard_dir}",
        "data.split=train",
        f"run.out_dir={out_dir}",
        "run.name=bench",
        f"run.seed={args.seed}",
        f"model.image_size={args.image_size}",
        f"model.dim={args.dim}",
        "model.dim_mults=[1, 2, 4]",
        "model.timesteps=1000",
        "model.objective=pred_v",
        "model.beta_schedule=sigmoid",
        f"train.batch_size={args.batch_size}",
        "train.grad_accum=1",
        f"train.max_steps={args.steps}",
        f"train.lr={args.lr:.6e}",  # with a dot: YAML reads 1e-4 as a string
        "train.adam_betas=[0.9, 0.99]",
        "train.max_grad_norm=1.0",
        "train.mixed_precision='no'",  # YAML reads a bare no as false
        "train.ema_decay=0.995",
        "train.ema_update_every=10",
        "train.ema_update_after_step=100",
        f"train.num_workers={multiprocessing.cpu_count()}",
        "train.log_every=10",
        f"train.checkpoint_every={never}",
        f"train.sample_every={never}",
    ]


def run_suite(args: argparse.Namespace, clock: StepClock, out_dir: Path) -> float:
    """Train with the suite's loop; returns the RSS (MB) just before the first step."""
    overrides = suite_overrides(args, args.data / "shards", out_dir)
    trainer = timed_generator_trainer(BASE_CONFIG, overrides, clock)
    rss = current_rss_mb()
    trainer.fit()
    return rss


def run_lucidrains(args: argparse.Namespace, clock: StepClock, out_dir: Path) -> float:
    """Train with denoising-diffusion-pytorch's Trainer; returns the RSS (MB) before the first step."""
    import torch
    from denoising_diffusion_pytorch import GaussianDiffusion, Trainer, Unet

    torch.manual_seed(args.seed)
    unet = Unet(dim=args.dim, dim_mults=(1, 2, 4), channels=1)
    diffusion = GaussianDiffusion(
        unet,
        image_size=args.image_size,
        timesteps=1000,
        objective="pred_v",
        beta_schedule="sigmoid",
    )
    trainer = Trainer(
        diffusion,
        str(args.data / "png"),
        train_batch_size=args.batch_size,
        gradient_accumulate_every=1,
        augment_horizontal_flip=False,  # its default is True; the suite's hflip is off
        train_lr=args.lr,
        train_num_steps=args.steps,
        ema_update_every=10,
        ema_decay=0.995,
        adam_betas=(0.9, 0.99),
        save_and_sample_every=args.steps + 1,  # never samples nor saves
        num_samples=4,
        results_folder=str(out_dir),
        amp=False,
        calculate_fid=False,
        max_grad_norm=1.0,
    )
    ema_update = trainer.ema.update

    def timed_update() -> None:
        ema_update()
        clock.tick()

    trainer.ema.update = timed_update
    rss = current_rss_mb()
    trainer.train()
    return rss


def child(args: argparse.Namespace) -> int:
    """One loop in this process; prints one JSON line (RESULT prefix) on stdout."""
    clock = StepClock(args.warmup, args.steps, args.cprofile)
    run = run_suite if args.run == "suite" else run_lucidrains
    rss_start = run_in_tmp(f"bench_train_ddpm-{args.run}-", run, args, clock)
    return print_result(clock, args, rss_start_mb=rss_start, workers=multiprocessing.cpu_count())


# --------------------------------------------------------------------------------------------------
# parent


def run_child(loop: str, args: argparse.Namespace, data: Path, profile: bool) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--run", loop, "--data", str(data)]
    cmd += report.forward(
        args, ("image_size", "dim", "batch_size", "steps", "warmup", "lr", "seed")
    )
    if profile:
        cmd.append("--cprofile")
    return child_result(cmd, None, f"the {loop} run")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-images", type=int, default=512)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=10, help="first steps, not timed")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each loop; medians")
    report.add_loop_options(parser, LOOPS)
    args = report.parse_loop_args(parser, argv)
    if args.run is not None:
        return child(args)

    with report.bench_root("bench_train_ddpm-", args.keep) as root:
        start = time.perf_counter()
        if (root / "png").is_dir() and (root / "shards" / "manifest.json").is_file():
            print(f"reusing the data in {root} (delete it to regenerate)")
            png_dir, shard_dir = root / "png", root / "shards"
        else:
            png_dir, shard_dir = make_data(root, args.num_images, args.image_size, args.seed)
        check_same(png_dir, shard_dir, args.image_size)
        print(
            f"data: {args.num_images} pseudo-X-rays 1x{args.image_size}x{args.image_size} as PNGs "
            f"and one shard set, made in {time.perf_counter() - start:.1f} s; both datasets yield "
            "the same float images (checked)"
        )
        print(
            f"model: Unet(dim={args.dim}, dim_mults=(1, 2, 4), channels=1), GaussianDiffusion("
            f"image_size={args.image_size}, timesteps=1000, pred_v, sigmoid); batch "
            f"{args.batch_size}, lr {args.lr}, {args.steps} steps ({args.warmup} warm-up not timed)"
        )
        print(
            f"lucidrains Trainer: augment_horizontal_flip=False (its default True), amp=False, "
            f"calculate_fid=False, save_and_sample_every={args.steps + 1}, "
            f"num_workers=cpu_count()={multiprocessing.cpu_count()}"
        )
        shown = suite_overrides(args, Path("<shards>"), Path("<tmp>"))
        report.print_start(BASE_CONFIG, shown, end="\n")
        results = report.alternating_rounds(
            LOOPS, args.rounds, lambda loop: run_child(loop, args, root, profile=False)
        )
        med = report.print_table(results, 12, [
            *report.rate_columns(9, 13), ("faults/step", 13, "faults_per_step", ".0f"),
            *report.RSS_COLUMNS, report.THREADS, ("workers", 9, "workers", "first"),
        ])  # fmt: skip
        paired = report.paired_ratios(results, "suite", "lucidrains")
        print(
            f"(medians over {args.rounds} round(s), order alternating; images/s over steps "
            f"{args.warmup + 1}..{args.steps}; ms/step = median step; faults = minor page faults; RSS of the training process: "
            "at the first step and peak at the end of the timed steps; worker peak = largest "
            "finished DataLoader worker)"
        )
        print("per-round ratios suite/lucidrains: " + " ".join(f"{p:.2f}" for p in paired))
        print(f"load average at end (1, 5, 15 min): {load()}")

        ratio = med("suite", "images_per_s") / med("lucidrains", "images_per_s")
        if report.wants_profile(args, ratio):
            report.print_profiles(
                args, LOOPS, lambda loop: run_child(loop, args, root, profile=True)
            )
        step = med("lucidrains", "median_step_ms") / med("suite", "median_step_ms")
        memory = med("suite", "peak_rss_mb") / med("lucidrains", "peak_rss_mb")
        print(
            f"\nmedian-step speed suite/lucidrains: {step:.2f}x (less sensitive to load spikes; "
            "leaves out the epoch-boundary worker restarts)"
        )
        print(f"peak RSS suite/lucidrains: {memory:.2f}x (training process)")
        print(f"ratio suite/lucidrains images/s: {ratio:.2f}x (goal >= 1.0x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
