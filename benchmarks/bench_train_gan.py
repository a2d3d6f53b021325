"""DCGAN training speed of the suite's generator loop against pytorch/examples' dcgan loop, and GAN
sampling through Ray into verified shards against a bare in-process loop, in one command.

Run by hand (not a test)::

    .venv/bin/python benchmarks/bench_train_gan.py                 # (a) and (b)
    .venv/bin/python benchmarks/bench_train_gan.py --only train    # or one of them

(a) Training. Same for both: the suite's own DCGAN networks (``build_generator`` of
    ``configs/generator/tiny_dcgan.yaml`` with the printed overrides: pytorch/examples' ladder at
    the image size, N(0, 0.02) init), the same generated pseudo chest X-rays (PNGs in an
    ImageFolder for the examples loop, a shard set for the suite), batch, Adam lr 2e-4 with betas
    (0.5, 0.999), no EMA, no clipping, no AMP, the same number of DataLoader workers. The examples
    side is the loop of pytorch/examples ``dcgan/main.py``: ``ImageFolder`` with its transforms
    (Resize, CenterCrop, ToTensor, Normalize 0.5; one channel as its mnist branch), D on real, D on
    the fakes detached (two backwards), ``optimizerD.step()``, then G through D on the same fakes
    with ``BCELoss``, ``optimizerG.step()`` and its per-step print; on the suite's D plus its final
    ``Sigmoid`` (the suite's D ends in a logit and uses BCE on logits). Neither loop saves images
    or checkpoints inside the timed steps. The suite runs ``GeneratorTrainer.fit`` (what
    ``synmed train generator`` runs) with ``train.log_every`` 1, as the examples print every step.

    Timing as ``bench_train_ddpm.py``: one clock read at the end of every step (after the suite's
    ``after_step``, after the examples' print), images/s over steps ``warmup+1..steps``; each loop
    in its own subprocess, rounds alternating the order; medians.

(b) Sampling. A DCGAN trained briefly through the suite, exported; ``synmed sample`` with 1 Ray
    worker (steady state: first shard begun to last shard written; Ray's start-up apart) against a
    bare loop in this process: ``model.sample`` on the same indices (latents from (seed, index)),
    written with h5py into shards of the same size, layout and LZF compression. One thread each.
    Rounds alternate; medians. Goal >= 0.95x.

Numbers from a 2-core machine shared with other work are noisy; the ratios matter, not the rates.
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
from typing import Any

import numpy as np
import report  # benchmarks/report.py: a script's folder is on sys.path
from PIL import Image
from step_clock import (
    REPO,
    StepClock,
    load,
    print_result,
    run_in_tmp,
    run_script,
    synmed,
    timed_generator_trainer,
    write_h5_shard,
)

BASE_CONFIG = REPO / "configs" / "generator" / "tiny_dcgan.yaml"
LOOPS = ("suite", "examples")


# --------------------------------------------------------------------------------------------------
# data


def make_data(root: Path, n: int, size: int, seed: int) -> tuple[Path, Path]:
    """``n`` pseudo X-rays (``bench_shards.pseudo_xray``) as PNGs in one ImageFolder class and as a
    one-split shard set."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    pseudo_xray = importlib.import_module("bench_shards").pseudo_xray
    from suite.data.writer import ShardSetWriter

    rng = np.random.default_rng(seed)
    png_dir, shard_dir = root / "png", root / "shards"
    (png_dir / "xray").mkdir(parents=True)
    shard_dir.mkdir()
    attrs = {"class_names": [], "label_kind": "none", "source": "bench_train_gan"}
    writer = ShardSetWriter(shard_dir, attrs, shard_size=n)
    for i in range(n):
        image = pseudo_xray(rng, size, int(rng.integers(0, 4)))
        Image.fromarray(image, "L").save(png_dir / "xray" / f"{i:06d}.png")
        writer.add({"images": image[None], "index": i, "split": 0})  # split 0 = "train"
    writer.close()
    return png_dir, shard_dir


def examples_dataset(png_dir: Path, size: int) -> Any:
    """dcgan/main.py's folder dataset, read as one channel (its mnist branch's Normalize)."""
    import torchvision.datasets as dset
    import torchvision.transforms as transforms

    return dset.ImageFolder(
        root=str(png_dir),
        loader=lambda path: Image.open(path).convert("L"),
        transform=transforms.Compose(
            [
                transforms.Resize(size),
                transforms.CenterCrop(size),
                transforms.ToTensor(),
                transforms.Normalize((0.5,), (0.5,)),
            ]
        ),
    )


def check_same(png_dir: Path, shard_dir: Path, size: int) -> None:
    """The examples' dataset and the suite's must give the same images in [-1, 1] (the suite maps
    its [0, 1] floats to [-1, 1] in ``GAN.discriminator_loss``)."""
    from suite.data.dataset import ShardDataset
    from suite.data.transforms import to_float

    folder = examples_dataset(png_dir, size)
    shards = ShardDataset(shard_dir, split="train", transform=to_float, verify="size")
    assert len(folder) == len(shards), (len(folder), len(shards))
    row_of = {int(index): row for row, index in enumerate(shards.indices)}
    for k in range(0, len(folder), max(1, len(folder) // 8)):
        a = folder[k][0]
        b = shards[row_of[int(Path(folder.samples[k][0]).stem)]]["image"] * 2 - 1
        assert a.shape == b.shape and float((a - b).abs().max()) < 1e-6, folder.samples[k][0]


# --------------------------------------------------------------------------------------------------
# (a) one training loop (child process)


def model_overrides(args: argparse.Namespace) -> list[str]:
    return [
        f"model.image_size={args.image_size}",
        "model.channels=1",
        "model.mode=unconditional",
        "model.num_classes=0",
        f"model.latent_dim={args.nz}",
        f"model.ngf={args.ngf}",
        f"model.ndf={args.ndf}",
    ]


def suite_overrides(args: argparse.Namespace, shard_dir: Path, out_dir: Path) -> list[str]:
    """Overrides on ``tiny_dcgan.yaml`` that make the suite's run the examples loop's."""
    never = args.steps + 1
    return [
        f"data.shards={shard_dir}",
        "data.split=train",
        f"run.out_dir={out_dir}",
        "run.name=bench",
        f"run.seed={args.seed}",
        *model_overrides(args),
        f"train.batch_size={args.batch_size}",
        "train.grad_accum=1",
        f"train.max_steps={args.steps}",
        f"train.lr={args.lr:.6e}",  # with a dot: YAML reads 1e-4 as a string
        "train.adam_betas=[0.5, 0.999]",
        "train.max_grad_norm=null",
        "train.mixed_precision='no'",  # YAML reads a bare no as false
        "train.ema_decay=0.0",
        f"train.num_workers={args.workers}",
        f"train.log_every={args.log_every}",
        f"train.checkpoint_every={never}",
        f"train.sample_every={never}",
    ]


def run_suite(args: argparse.Namespace, clock: StepClock, out_dir: Path) -> None:
    overrides = suite_overrides(args, args.data / "shards", out_dir)
    timed_generator_trainer(BASE_CONFIG, overrides, clock).fit()


def run_examples(args: argparse.Namespace, clock: StepClock, out_dir: Path) -> None:
    """pytorch/examples dcgan/main.py's training loop on the suite's networks."""
    import torch
    import torch.nn as nn
    import torch.optim as optim

    from suite.generative.families import build_generator
    from suite.schema import load_config

    torch.manual_seed(args.seed)
    device = torch.device("cpu")
    model = build_generator(load_config(BASE_CONFIG, model_overrides(args)).model)
    netG = model.G.net.to(device)  # noqa: N806 (the example's names)
    netD = nn.Sequential(*model.D.net, nn.Sigmoid()).to(device)  # noqa: N806
    dataset = examples_dataset(args.data / "png", args.image_size)
    # drop_last as the suite's loader (the examples' loop would take a short last batch)
    dataloader = torch.utils.data.DataLoader(
        dataset, batch_size=args.batch_size, shuffle=True, num_workers=args.workers, drop_last=True
    )
    nz, niter = args.nz, -(-args.steps // len(dataloader))
    criterion = nn.BCELoss()
    real_label, fake_label = 1, 0
    optimizerD = optim.Adam(netD.parameters(), lr=args.lr, betas=(0.5, 0.999))  # noqa: N806
    optimizerG = optim.Adam(netG.parameters(), lr=args.lr, betas=(0.5, 0.999))  # noqa: N806
    done = 0
    for epoch in range(niter):
        for i, data in enumerate(dataloader, 0):
            if done == args.steps:
                break
            # (1) Update D network: maximize log(D(x)) + log(1 - D(G(z)))
            netD.zero_grad()
            real_cpu = data[0].to(device)
            batch_size = real_cpu.size(0)
            label = torch.full((batch_size,), real_label, dtype=real_cpu.dtype, device=device)
            output = netD(real_cpu).view(-1)
            errD_real = criterion(output, label)  # noqa: N806
            errD_real.backward()
            D_x = output.mean().item()  # noqa: N806
            noise = torch.randn(batch_size, nz, 1, 1, device=device)
            fake = netG(noise)
            label.fill_(fake_label)
            output = netD(fake.detach()).view(-1)
            errD_fake = criterion(output, label)  # noqa: N806
            errD_fake.backward()
            D_G_z1 = output.mean().item()  # noqa: N806
            errD = errD_real + errD_fake  # noqa: N806
            optimizerD.step()
            # (2) Update G network: maximize log(D(G(z)))
            netG.zero_grad()
            label.fill_(real_label)
            output = netD(fake).view(-1)
            errG = criterion(output, label)  # noqa: N806
            errG.backward()
            D_G_z2 = output.mean().item()  # noqa: N806
            optimizerG.step()
            if (i + 1) % args.log_every == 0:
                print(
                    "[%d/%d][%d/%d] Loss_D: %.4f Loss_G: %.4f D(x): %.4f D(G(z)): %.4f / %.4f"  # noqa: UP031 (the example's own print)
                    % (
                        epoch,
                        niter,
                        i,
                        len(dataloader),
                        errD.item(),
                        errG.item(),
                        D_x,
                        D_G_z1,
                        D_G_z2,
                    )  # fmt: skip
                )
            done += 1
            clock.tick()


def child(args: argparse.Namespace) -> int:
    clock = StepClock(args.warmup, args.steps, args.cprofile)
    run = run_suite if args.run == "suite" else run_examples
    run_in_tmp(f"bench_train_gan-{args.run}-", run, args, clock)
    return print_result(clock, args)


def run_child(loop: str, args: argparse.Namespace, data: Path, profile: bool) -> dict[str, Any]:
    names = ("image_size", "nz", "ngf", "ndf", "batch_size", "steps", "warmup", "lr", "seed",
             "workers", "log_every")  # fmt: skip
    argv = ["--run", loop, "--data", str(data), *report.forward(args, names)]
    if profile:
        argv.append("--cprofile")
    return run_script(__file__, argv, args.threads)


def bench_train(args: argparse.Namespace, root: Path) -> None:
    print(
        f"(a) training: DCGAN nz {args.nz}, ngf/ndf {args.ngf}/{args.ndf}, "
        f"1x{args.image_size}x{args.image_size}, batch {args.batch_size}, lr {args.lr}, "
        f"{args.steps} steps ({args.warmup} warm-up not timed), {args.workers} DataLoader workers"
    )
    shown = suite_overrides(args, Path("<shards>"), Path("<tmp>"))
    report.print_start(BASE_CONFIG, shown)
    results = report.alternating_rounds(
        LOOPS, args.rounds, lambda loop: run_child(loop, args, root, profile=False)
    )
    cpu_col = ("CPU ms/step", 13, "cpu_ms_per_step", ".1f")
    columns = [*report.rate_columns(10, 15), cpu_col, report.PEAK_RSS, report.THREADS]
    med = report.print_table(results, 10, columns)
    paired = report.paired_ratios(results, "suite", "examples")
    print("per-round ratios suite/examples: " + " ".join(f"{p:.2f}" for p in paired))
    print(f"load average at end: {load()}")
    ratio = med("suite", "images_per_s") / med("examples", "images_per_s")
    if report.wants_profile(args, ratio):
        report.print_profiles(args, LOOPS, lambda loop: run_child(loop, args, root, profile=True))
    step = med("examples", "median_step_ms") / med("suite", "median_step_ms")
    cpu = med("examples", "cpu_ms_per_step") / med("suite", "cpu_ms_per_step")
    print(f"median-step speed suite/examples: {step:.2f}x")
    print(
        f"CPU time per step examples/suite: {cpu:.2f}x (the training process's own work: "
        "hardly moved by other load; data loading is in the workers, not in it)"
    )
    print(f"ratio suite/examples images/s: {ratio:.2f}x (goal >= 1.0x)\n")


# --------------------------------------------------------------------------------------------------
# (b) sampling


def train_export(args: argparse.Namespace, root: Path) -> Path:
    """A briefly trained DCGAN (its export), trained through ``synmed train generator``."""
    overrides = suite_overrides(args, root / "shards", root / "runs")
    overrides = [o for o in overrides if not o.startswith(("train.max_steps", "train.sample"))]
    synmed("train", "generator", str(BASE_CONFIG), *overrides,
           f"train.max_steps={args.sample_train_steps}", "train.sample_every=100000")  # fmt: skip
    return root / "runs" / "bench"


def bare_sampling(checkpoint: Path, out: Path, n: int, batch: int, shard_size: int) -> float:
    """images/s of ``model.sample`` batch by batch, written with h5py as the suite's shards are
    laid out (one LZF chunk per image, an index dataset)."""
    import torch

    from suite.generative.base import SampleOptions
    from suite.generative.export import load_generator

    torch.set_num_threads(1)
    model, _ = load_generator(checkpoint)
    options = SampleOptions(sampler="gan", steps=1)
    out.mkdir(parents=True)
    t0 = time.perf_counter()
    for number, start in enumerate(range(0, n, shard_size)):
        stop = min(start + shard_size, n)
        images = np.concatenate(
            [
                model.sample(range(s, min(s + batch, stop)), 0, None, options).images
                for s in range(start, stop, batch)
            ]  # fmt: skip
        )
        write_h5_shard(out / f"shard-{number:05d}.h5", images, start)
    return n / (time.perf_counter() - t0)


def ray_sampling(checkpoint: Path, out: Path, n: int, batch: int, shard_size: int) -> dict:
    synmed("sample", "--checkpoint", str(checkpoint), "--num-images", str(n), "--shard-size",
           str(shard_size), "--batch-size", str(batch), "--workers", "1", "--out", str(out))  # fmt: skip
    return json.loads((out / "sample_summary.json").read_text())


def bench_sampling(args: argparse.Namespace, root: Path) -> None:
    checkpoint = train_export(args, root)
    n, b, shard = args.sample_images, args.sample_batch, args.shard_size
    print(
        f"(b) sampling: the DCGAN of (a) trained {args.sample_train_steps} steps, {n} images, "
        f"batch {b}, shards of {shard}, 1 worker, 1 thread"
    )
    print(f"load average at start: {load()}")
    rates = report.sampling_rounds(
        root,
        args.rounds,
        lambda out: bare_sampling(checkpoint, out, n, b, shard),
        lambda out: ray_sampling(checkpoint, out, n, b, shard),
    )
    print("  both wrote the same images into the same shards (checked in round 1)")
    labels = ("bare in-process loop + h5py   ", "synmed sample, 1 Ray worker   ")
    report.print_sampling(rates, labels, ".1f", ".0f", "Ray start-up")


# --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=("train", "sample"), help="run (a) or (b) only")
    parser.add_argument("--num-images", type=int, default=512)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--nz", type=int, default=100)
    parser.add_argument("--ngf", type=int, default=32)
    parser.add_argument("--ndf", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=5, help="first steps, not timed")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (examples: 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of both loops")
    parser.add_argument("--log-every", type=int, default=1, help="(examples: every step)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each; medians")
    parser.add_argument("--sample-train-steps", type=int, default=20)
    parser.add_argument("--sample-images", type=int, default=20000)
    parser.add_argument("--sample-batch", type=int, default=256)
    parser.add_argument("--shard-size", type=int, default=2000)
    report.add_loop_options(
        parser, LOOPS, "one more cProfiled run of each training loop (auto: if the ratio < 1)"
    )
    args = report.parse_loop_args(parser, argv)
    if args.run is not None:
        return child(args)

    os.environ.setdefault("TQDM_DISABLE", "1")
    with report.bench_root("bench_train_gan-", args.keep) as root:
        start = time.perf_counter()
        if (root / "png").is_dir() and (root / "shards" / "manifest.json").is_file():
            print(f"reusing the data in {root} (delete it to regenerate)")
        else:
            make_data(root, args.num_images, args.image_size, args.seed)
        check_same(root / "png", root / "shards", args.image_size)
        print(
            f"data: {args.num_images} pseudo-X-rays 1x{args.image_size}x{args.image_size} as PNGs "
            f"and one shard set ({time.perf_counter() - start:.1f} s); both datasets give the same "
            "images (checked)\n"
        )
        if args.only != "sample":
            bench_train(args, root)
        if args.only != "train":
            shutil.rmtree(root / "runs", ignore_errors=True)
            bench_sampling(args, root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
