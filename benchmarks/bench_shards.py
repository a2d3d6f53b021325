"""Read throughput of a shard set (the suite's ShardDataset) against the same images as PNGs read
by torchvision's ImageFolder.

Run by hand (not a test)::

    .venv/bin/python benchmarks/bench_shards.py --rounds 3

Both sides read the same generated pseudo chest X-rays (smooth anatomy plus mild noise, so PNG
compresses them about 1.8x like real radiographs) through the same DataLoader (default collate,
same shuffle seed) as float32 (B, C, H, W) in [0, 1]; the first batches are checked identical.
The shard set is read two ways: ``shard``, per sample (DataLoader's own batching: one dict per
image, collated in the worker, moved as a list), and ``shard-batched``, a BatchSampler over the
same shuffled order whose batches ``ShardDataset.read_batch`` reads whole (each run of
consecutive rows one ``read_direct``, one float conversion per batch, three tensors moved).
images/s is the median over ``--rounds`` of epochs 2..E (epoch 1, worker start-up and first file
opens, is shown apart). Each reader runs at ``--workers`` and, unless that is 0, at num_workers=0
(the reader-bound ratio: reading cost alone, no worker transport). The ``null-reader`` row reads
nothing: the DataLoader's own ceiling at ``--workers`` on this machine.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import report  # benchmarks/report.py: a script's folder is on sys.path
import torch
from PIL import Image
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler
from torchvision import datasets, transforms

from suite.data.dataset import BatchReads, Sample, ShardDataset
from suite.data.writer import ShardSetWriter

# the readers compared: PNG folders, the shard set read per sample (DataLoader batching), and read
# a batch at a time (ShardDataset.read_batch through BatchReads)
READERS = ("ImageFolder", "shard", "shard-batched")
# ImageFolder numbers classes by sorted folder name; the prefixes keep that order = label order.
CLASSES = ["0-normal", "1-nodule", "2-effusion", "3-cardiomegaly"]


# --------------------------------------------------------------------------------------------------
# data


def pseudo_xray(rng: np.random.Generator, size: int, label: int) -> np.ndarray:
    """A (size, size) uint8 image that looks roughly like a frontal chest radiograph.

    Dark lung fields on a brighter body, a bright spine and mediastinum, rib arcs, soft blobs, a
    smooth exposure gradient and mild noise. The class changes the anatomy: a bright nodule, a
    basal opacity (effusion) or a wide heart shadow.
    """
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = 0.55 + 0.15 * (y - 0.5) + 0.05 * rng.standard_normal() * (x - 0.5)  # exposure gradient
    body = np.exp(-(((x - 0.5) / 0.42) ** 8 + ((y - 0.55) / 0.55) ** 8))
    img = img * (0.35 + 0.65 * body)
    tilt = rng.normal(0, 0.02)
    for side in (-1, 1):  # lung fields
        cx, cy = 0.5 + side * (0.19 + rng.normal(0, 0.01)), 0.47 + rng.normal(0, 0.01)
        rx, ry = 0.14 + rng.normal(0, 0.01), 0.28 + rng.normal(0, 0.015)
        lung = np.exp(-((((x - cx) / rx) ** 2 + ((y - cy + tilt * side) / ry) ** 2) ** 2))
        img -= 0.32 * lung
        ribs = 0.5 + 0.5 * np.sin(2 * np.pi * (9 * y + 2.5 * (x - cx) ** 2 * side + rng.random()))
        img += 0.06 * lung * ribs**3
    img += 0.22 * np.exp(-(((x - 0.5) / 0.045) ** 2)) * (y > 0.05)  # spine
    heart_w = 0.16 if label != 3 else 0.24
    img += 0.18 * np.exp(-(((x - 0.47) / heart_w) ** 2 + ((y - 0.66) / 0.14) ** 2))  # heart
    for _ in range(rng.integers(2, 6)):  # soft tissue blobs
        bx, by, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.85), rng.uniform(0.03, 0.1)
        img += rng.uniform(-0.05, 0.05) * np.exp(-((x - bx) ** 2 + (y - by) ** 2) / r**2)
    if label == 1:  # nodule
        bx, by = rng.choice([0.3, 0.7]) + rng.normal(0, 0.04), rng.uniform(0.3, 0.6)
        img += 0.25 * np.exp(-((x - bx) ** 2 + (y - by) ** 2) / rng.uniform(0.015, 0.03) ** 2)
    if label == 2:  # effusion: basal opacity on one side
        side = rng.choice([-1, 1])
        img += 0.25 / (1 + np.exp(-(y - 0.7) / 0.03)) * (side * (x - 0.5) > 0.05)
    img += rng.normal(0, 0.012, img.shape)  # quantum noise
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def make_data(
    root: Path, n: int, size: int, channels: int, compression: str, shard_size: int, seed: int
) -> tuple[Path, Path]:
    """Write ``n`` images as PNGs in class folders and as a shard set in the same (ImageFolder) order."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CLASSES), n)
    images = np.stack([pseudo_xray(rng, size, int(label)) for label in labels])
    images = np.repeat(images[:, None], channels, axis=1)  # (N, C, H, W)

    png_dir = root / "png"
    for name in CLASSES:
        (png_dir / name).mkdir(parents=True)
    mode = "L" if channels == 1 else "RGB"
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        pixels = image[0] if channels == 1 else image.transpose(1, 2, 0)
        Image.fromarray(pixels, mode).save(png_dir / CLASSES[label] / f"{i:06d}.png")

    # ImageFolder orders samples by class folder, then file name; write the shards in that order
    # so position p is the same image on both sides (and the same shuffle gives the same batches).
    order = sorted(range(n), key=lambda i: (int(labels[i]), i))
    shard_dir = root / "shards"
    shard_dir.mkdir()
    attrs = {"class_names": CLASSES, "label_kind": "multiclass", "source": "bench_shards"}
    writer = ShardSetWriter(shard_dir, attrs, shard_size=shard_size, compression=compression)
    for i in order:
        writer.add({"images": images[i], "index": i, "labels": int(labels[i])})
    writer.close()
    return png_dir, shard_dir


def disk_bytes(path: Path) -> tuple[int, int, int]:
    """(files, apparent bytes, allocated bytes) under ``path``."""
    files = apparent = allocated = 0
    for p in path.rglob("*"):
        if p.is_file():
            st = p.stat()
            files += 1
            apparent += st.st_size
            allocated += st.st_blocks * 512
    return files, apparent, allocated


# --------------------------------------------------------------------------------------------------
# the readers


def load_gray(path: str) -> Image.Image:
    with open(path, "rb") as f:
        return Image.open(f).convert("L")


def load_rgb(path: str) -> Image.Image:
    with open(path, "rb") as f:
        return Image.open(f).convert("RGB")


def to_float(sample: Sample) -> Sample:
    sample["image"] = sample["image"].float().div_(255)
    return sample


class NullDataset(Dataset[Sample]):
    """Reads nothing: a constant image of the right shape and dtype per item, to measure what the
    DataLoader itself (worker -> main process transport, collate) costs with these settings."""

    def __init__(self, n: int, shape: tuple[int, ...], dtype: torch.dtype) -> None:
        self.n, self.image = n, torch.zeros(shape, dtype=dtype)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, position: int) -> Sample:
        return {"image": self.image.clone(), "label": 0}


def unpack(batch: Any, float_in: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, labels) of a default-collated batch: a dict (ShardDataset) or a pair (ImageFolder);
    with ``float_in="main"`` the uint8 batch is converted to float in [0, 1] here."""
    images, labels = (batch["image"], batch["label"]) if isinstance(batch, dict) else batch
    if float_in == "main":
        images = images.float().div_(255)
    return images, labels


def make_loader(ds: Dataset[Any], args: argparse.Namespace, workers: int) -> DataLoader:
    """The one DataLoader configuration every method gets (default collate, seeded shuffle);
    ``shard-batched`` draws the same shuffled batches through a BatchSampler and reads each as
    one batch (no per-image dicts, no collate)."""
    if isinstance(ds, BatchReads):
        # one generator for the loader and its sampler, as shuffle=True builds them: the loader
        # draws its workers' base seed from it first, so the permutation matches the others'
        generator = torch.Generator().manual_seed(args.seed)
        batches = BatchSampler(
            RandomSampler(ds, generator=generator), args.batch_size, drop_last=False
        )
        return DataLoader(
            ds,
            sampler=batches,
            batch_size=None,
            num_workers=workers,
            persistent_workers=workers > 0,
            generator=generator,
        )
    return DataLoader(
        ds,
        batch_size=args.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(args.seed),
        num_workers=workers,
        persistent_workers=workers > 0,
    )


def time_epochs(loader: DataLoader, epochs: int, float_in: str) -> list[tuple[int, float]]:
    """(images, seconds) per epoch; the batches are touched so nothing is lazily skipped."""
    out = []
    for _ in range(epochs):
        n, checksum = 0, 0.0
        start = time.perf_counter()
        for batch in loader:
            images, _labels = unpack(batch, float_in)
            n += len(images)
            checksum += float(images[:, :, 0, 0].sum())
        out.append((n, time.perf_counter() - start))
    return out


def build(method: str, png_dir: Path, shard_dir: Path, args: argparse.Namespace) -> Dataset[Any]:
    """The dataset for ``method``; it yields float in [0, 1] (``--float-in worker``) or uint8."""
    in_worker = args.float_in == "worker"
    if method == "ImageFolder":
        loader = load_gray if args.channels == 1 else load_rgb
        to_tensor = transforms.ToTensor() if in_worker else transforms.PILToTensor()
        return datasets.ImageFolder(png_dir, transform=to_tensor, loader=loader)
    if method == "null-reader":
        shape = (args.channels, args.image_size, args.image_size)
        return NullDataset(args.num_images, shape, torch.float32 if in_worker else torch.uint8)
    if method == "shard-batched":
        return BatchReads(
            ShardDataset(shard_dir, verify="size"), transform=to_float if in_worker else None
        )
    return ShardDataset(shard_dir, transform=to_float if in_worker else None, verify="size")


def check_same(
    png_dir: Path, shard_dir: Path, args: argparse.Namespace, methods: list[str]
) -> None:
    """Both readers must yield the same first batch (same images, labels, order, dtype, range)."""
    firsts = []
    for method in methods:
        loader = make_loader(build(method, png_dir, shard_dir, args), args, 0)
        firsts.append(unpack(next(iter(loader)), args.float_in))
    ref_images, ref_labels = firsts[0]
    shape = (args.batch_size, args.channels, args.image_size, args.image_size)
    assert ref_images.dtype == torch.float32 and tuple(ref_images.shape) == shape, ref_images.shape
    assert float(ref_images.min()) >= 0.0 and float(ref_images.max()) <= 1.0
    for method, (images, labels) in zip(methods[1:], firsts[1:], strict=True):
        assert torch.equal(images, ref_images), f"{method} yields other images than {methods[0]}"
        assert torch.equal(labels, ref_labels), f"{method} yields other labels than {methods[0]}"


def profile_reader(method: str, png_dir: Path, shard_dir: Path, args: argparse.Namespace) -> str:
    """cProfile one epoch of ``method`` in-process (num_workers=0): where the reading time goes."""
    loader = make_loader(build(method, png_dir, shard_dir, args), args, 0)
    time_epochs(loader, 1, args.float_in)  # open files, warm caches
    prof = cProfile.Profile()
    prof.enable()
    time_epochs(loader, 1, args.float_in)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(14)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-images", type=int, default=4000)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--channels", type=int, default=1, choices=(1, 3))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--workers", type=int, default=2, help="num_workers of the goal ratio (0 is also run)"
    )
    parser.add_argument("--epochs", type=int, default=2, help="epoch 1 is warm-up, timed apart")
    parser.add_argument("--compression", default="lzf", choices=("lzf", "gzip", "none"))
    parser.add_argument("--shard-size", type=int, default=1024, help="images per shard")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--float-in",
        choices=("worker", "main"),
        default="worker",
        help="worker: the datasets yield float (ToTensor / uint8->float transform); main: they "
        "yield uint8 and the main process converts each batch (4x less worker->main traffic)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="repeat all runs, report the median")
    parser.add_argument(
        "--no-null-reader",
        dest="null_reader",
        action="store_false",
        help="skip the null-reader row (DataLoader transport ceiling)",
    )
    parser.add_argument(
        "--profile",
        choices=("auto", "always", "never"),
        default="auto",
        help="cProfile the shard reader (auto: only when the ratio is below 3x)",
    )
    parser.add_argument(
        "--keep",
        type=Path,
        help="write the data here and keep it, or reuse the data already there (else a temp dir)",
    )
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (epoch 1 is warm-up)")

    with report.bench_root("bench_shards-", args.keep) as root:
        start = time.perf_counter()
        if (root / "png").is_dir() and (root / "shards" / "manifest.json").is_file():
            print(f"reusing the data in {root} (delete it to regenerate)")
            png_dir, shard_dir = root / "png", root / "shards"
        else:
            png_dir, shard_dir = make_data(
                root,
                args.num_images,
                args.image_size,
                args.channels,
                args.compression,
                args.shard_size,
                args.seed,
            )
        print(
            f"data: {args.num_images} pseudo-X-rays {args.channels}x{args.image_size}x{args.image_size}, "
            f"{len(CLASSES)} classes, made in {time.perf_counter() - start:.1f} s under {root}"
        )
        worker_settings = [args.workers] + ([0] if args.workers != 0 else [])
        print(
            f"loader: batch_size={args.batch_size} num_workers in {worker_settings} shuffle "
            f"seed={args.seed} persistent_workers, default collate, epochs={args.epochs} "
            f"(epoch 1 = warm-up); torch {torch.__version__}, {os.cpu_count()} CPUs"
        )
        check_same(png_dir, shard_dir, args, list(READERS))
        print("check: the readers yield the same first batch (float32 in [0,1], same labels)\n")

        runs = [(m, w) for w in worker_settings for m in READERS]
        if args.null_reader:
            runs.append(("null-reader", args.workers))
        rates: dict[tuple[str, int], list[float]] = {r: [] for r in runs}
        warm: dict[tuple[str, int], list[float]] = {r: [] for r in runs}
        opens: dict[tuple[str, int], list[float]] = {r: [] for r in runs}
        for _ in range(args.rounds):  # rounds interleave the runs, so a noisy neighbour
            for method, workers in runs:  # process slows all of them alike
                t0 = time.perf_counter()
                ds = build(method, png_dir, shard_dir, args)
                opens[method, workers].append(time.perf_counter() - t0)
                loader = make_loader(ds, args, workers)
                epochs = time_epochs(loader, args.epochs, args.float_in)
                del loader  # stop the persistent workers before the next run
                warm[method, workers].append(epochs[0][0] / epochs[0][1])
                rates[method, workers].append(
                    sum(e[0] for e in epochs[1:]) / sum(e[1] for e in epochs[1:])
                )
        ips = {r: statistics.median(v) for r, v in rates.items()}

        files = {
            "ImageFolder": disk_bytes(png_dir),
            "shard": disk_bytes(shard_dir),
            "shard-batched": disk_bytes(shard_dir),
            "null-reader": (0, 0, 0),
        }
        raw = args.num_images * args.channels * args.image_size**2
        spread = "  min-max img/s" if args.rounds > 1 else ""
        print(
            f"{'method':<15}{'workers':>8}{'images/s':>10}{'epoch1 img/s':>14}{'open s':>8}"
            f"{'files':>7}{'MB on disk':>12}{'MB allocated':>14}{spread}"
        )
        for run in runs:
            method, workers = run
            nfiles, apparent, allocated = files[method]
            extra = f"  {min(rates[run]):.0f}-{max(rates[run]):.0f}" if spread else ""
            print(
                f"{method:<15}{workers:>8}{ips[run]:>10.0f}{statistics.median(warm[run]):>14.0f}"
                f"{statistics.median(opens[run]):>8.2f}{nfiles:>7}{apparent / 1e6:>12.1f}"
                f"{allocated / 1e6:>14.1f}{extra}"
            )
        print(
            f"(raw uint8 pixels: {raw / 1e6:.1f} MB; compression={args.compression}; images/s = "
            f"median over {args.rounds} round(s) of epochs 2..{args.epochs}; float in the {args.float_in})"
        )
        ratio = ips["shard", args.workers] / ips["ImageFolder", args.workers]
        reader_bound = ips["shard", 0] / ips["ImageFolder", 0]
        batched = ips["shard-batched", args.workers] / ips["ImageFolder", args.workers]
        batched_bound = ips["shard-batched", 0] / ips["ImageFolder", 0]
        if args.profile == "always" or (args.profile == "auto" and ratio < 3):
            print("\n--- cProfile, one epoch of shard, num_workers=0 (tottime) ---")
            print(profile_reader("shard", png_dir, shard_dir, args).rstrip())
        print(
            f"\nchosen settings: num_workers={args.workers} batch_size={args.batch_size} "
            f"float in the {args.float_in}, {args.channels}x{args.image_size}x{args.image_size}"
        )
        if args.null_reader:
            ceiling = ips["null-reader", args.workers] / ips["ImageFolder", args.workers]
            print(
                f"null-reader ceiling/ImageFolder (num_workers={args.workers}): {ceiling:.2f}x "
                "(the most any reader can reach with these DataLoader settings here)"
            )
        print(f"reader-bound ratio (num_workers=0): {reader_bound:.2f}x per sample, "
              f"{batched_bound:.2f}x batched")  # fmt: skip
        print(f"ratio shard/ImageFolder: {ratio:.2f}x (per-sample reads)")
        print(f"ratio shard-batched/ImageFolder: {batched:.2f}x (goal >= 3x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
