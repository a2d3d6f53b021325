"""Training speed and peak memory of the suite's DINO pretraining loop (``SSLTrainer.fit``) against
lightly's own reference DINO loop (``examples/pytorch/dino.py``) on the same backbone, views, data,
batch and number of DataLoader workers.

Run by hand (not a test)::

    .venv/bin/python benchmarks/bench_ssl.py

Data: the first ``--num-images`` Fashion-MNIST images (real, Debian ``dataset-fashion-mnist``, the
suite's ``demo:fashion-mnist``) ingested with the suite's ingest at ``--image-size``; both loops
train on that shard set's train split: the suite reads the shards, lightly a ``Dataset`` that hands
the same uint8 images to its ``DINOTransform`` as PIL images (as the example's VOC dataset does).

Same for both: the backbone, built by ``suite.models.backbones.build_backbone`` from the one
``BackboneSpec`` the suite's config gives (same seed, same initial weights); ``DINOProjectionHead``
sizes (the example's 512, 64, 2048; the student's last layer frozen for epoch 0); ``DINOLoss``
(output 2048, teacher temperature warmed up over 5 epochs, as the example); lightly's
``DINOTransform`` with the same global/local sizes, local count, scales and augmentation
probabilities; Adam, lr 0.001, no weight decay (the example's optimizer); no gradient clipping
(the example has none); teacher EMA of backbone and head every step; shuffled, ``drop_last``
batches, ``--workers`` DataLoader workers that restart at every epoch; no AMP.

What differs is only what each loop is: lightly's example forwards every view on its own (2
teacher forwards, 2 + n_local student forwards per step) and calls ``DINOLoss(..., epoch=)``;
the suite forwards the global views as one batch and the local views as another, seeds every
sample's views, sets its LR / weight-decay / momentum schedules per step, and all-reduces the loss
(a no-op collective in one process). The suite runs ``configs/ssl/tiny_dino_vit.yaml`` with the
printed overrides.

Timing: one clock, read at the end of every optimizer step in both loops (the suite's ``after_step`` is
wrapped; lightly's loop is written out here). images/s is over steps ``warmup+1..steps``; start-up
and the suite's post-training work (checkpoint, export) do not count, data waits and epoch-boundary
worker restarts do. Each loop runs in its own subprocess, so ``ru_maxrss`` (read at the end of the
timed steps) is that loop's peak RSS. Rounds alternate the order; medians.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import math
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BASE_CONFIG = REPO / "configs" / "ssl" / "tiny_dino_vit.yaml"
LOOPS = ("suite", "lightly")
# lightly's examples/pytorch/dino.py: DINOProjectionHead(input_dim, 512, 64, 2048),
# DINOLoss(output_dim=2048, warmup_teacher_temp_epochs=5), Adam(lr=0.001)
HEAD = (512, 64, 2048)
WARMUP_TEACHER_TEMP_EPOCHS = 5
LR = 1e-3

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402 (benchmarks/report.py, on the path just above)
from step_clock import RESULT, child_result, load, print_result, run_in_tmp  # noqa: E402

_ddpm = importlib.import_module("bench_train_ddpm")
StepClock, current_rss_mb = _ddpm.StepClock, _ddpm.current_rss_mb


# --------------------------------------------------------------------------------------------------
# data


def make_data(root: Path, num_images: int, size: int) -> Path:
    """Ingest the first ``num_images`` Fashion-MNIST images at ``size`` px into ``root/shards``."""
    from suite.data.demo import resolve_source
    from suite.data.ingest.options import IngestOptions
    from suite.data.ingest.pipeline import ingest

    path, defaults = resolve_source("demo:fashion-mnist")
    options = IngestOptions(**{**defaults, "image_size": size, "limit": num_images})
    ingest(path, root / "shards", options, progress=False)
    return root / "shards"


def train_images(shard_dir: Path) -> np.ndarray:
    """The train split's images, uint8 ``(N, C, H, W)``: what the lightly loop reads."""
    from suite.data.dataset import ShardDataset

    data = ShardDataset(shard_dir, split="train", verify="size")
    return np.stack([data[i]["image"].numpy() for i in range(len(data))])


# --------------------------------------------------------------------------------------------------
# the two loops (child process)


def suite_overrides(args: argparse.Namespace, shard_dir: Path, out_dir: Path) -> list[str]:
    """Overrides on ``tiny_dino_vit.yaml`` that make the suite's run lightly's example's."""
    n_train = args.n_train if args.n_train else 1
    epochs = max(1, math.ceil(args.steps / max(1, n_train // args.batch_size)))
    never = args.steps * 10 + 1
    return [
        f"pretrain.sources.real={shard_dir}",
        "pretrain.mix=real",
        "pretrain.split=train",
        f"run.out_dir={out_dir}",
        "run.name=bench",
        f"run.seed={args.seed}",
        f"pretrain.backbone.arch={args.arch}",
        f"pretrain.backbone.image_size={args.image_size}",
        f"pretrain.backbone.patch_size={args.patch_size}",
        f"pretrain.backbone.num_layers={args.num_layers if args.arch.startswith('vit') else 0}",
        f"pretrain.backbone.stem={args.stem}",
        f"pretrain.method.head_hidden_dim={HEAD[0]}",
        f"pretrain.method.head_bottleneck_dim={HEAD[1]}",
        f"pretrain.method.head_output_dim={HEAD[2]}",
        "pretrain.method.freeze_last_layer_epochs=1",
        f"pretrain.method.warmup_teacher_temp_epochs={WARMUP_TEACHER_TEMP_EPOCHS}",
        f"pretrain.method.local_crop_size={args.local_size}",
        f"pretrain.method.n_local_views={args.n_local}",
        f"pretrain.epochs={epochs}",
        "pretrain.optimizer=adam",
        f"pretrain.lr={LR:.6e}",  # with a dot: YAML reads 1e-3 as a string
        "pretrain.scale_lr=false",
        "pretrain.warmup_epochs=0",
        "pretrain.weight_decay=0.0",
        "pretrain.weight_decay_end=0.0",
        f"train.batch_size={args.batch_size}",
        "train.grad_accum=1",
        "train.max_grad_norm=null",  # the example does not clip
        "train.mixed_precision='no'",  # YAML reads a bare no as false
        f"train.num_workers={args.workers}",
        "train.log_every=10",
        f"train.checkpoint_every={never}",
    ]


def load_suite_config(args: argparse.Namespace, out_dir: Path) -> Any:
    from suite.schema import load_config

    return load_config(BASE_CONFIG, suite_overrides(args, args.data / "shards", out_dir))


def run_suite(args: argparse.Namespace, clock: Any, out_dir: Path) -> float:
    """Train with the suite's loop; returns the RSS (MB) just before the first step."""
    from suite.ssl.train import SSLTrainer

    class TimedTrainer(SSLTrainer):
        def after_step(self) -> None:  # the last thing a step does (after its EMA update)
            super().after_step()
            clock.tick()

    trainer = TimedTrainer(load_suite_config(args, out_dir))
    rss = current_rss_mb()
    # stop after --steps optimizer steps (fit's preemption path: the stop travels in the step's
    # all-reduce, then one checkpoint is saved after the timed steps)
    trainer.fit(stop_requested=lambda: trainer.step + 1 >= args.steps)
    return rss


class ArrayImages:
    """The shard set's train images as PIL images through a transform, target 0 (like the
    example's ``VOCDetection(transform=..., target_transform=lambda t: 0)``)."""

    def __init__(self, images: np.ndarray, transform: Any) -> None:
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        from PIL import Image

        a = self.images[i]
        image = Image.fromarray(a[0]) if a.shape[0] == 1 else Image.fromarray(a.transpose(1, 2, 0))
        return self.transform(image), 0


def run_lightly(args: argparse.Namespace, clock: Any, out_dir: Path) -> float:
    """lightly's examples/pytorch/dino.py loop, on the suite's backbone and views."""
    import warnings

    import torch
    from lightly.loss import DINOLoss
    from lightly.models.modules import DINOProjectionHead
    from lightly.models.utils import deactivate_requires_grad, update_momentum
    from lightly.transforms.dino_transform import DINOTransform
    from lightly.utils.scheduler import cosine_schedule

    from suite.models.backbones import build_backbone
    from suite.ssl.train import backbone_spec

    cfg = load_suite_config(args, out_dir)  # only for the spec and the view parameters
    images = np.load(args.data / "train.npy")
    spec = backbone_spec(cfg.pretrain, images.shape[1])
    m = cfg.pretrain.method
    torch.manual_seed(args.seed)

    warnings.simplefilter("ignore", FutureWarning)  # lightly's head uses the deprecated weight_norm

    class DINO(torch.nn.Module):
        def __init__(self, backbone: torch.nn.Module, input_dim: int) -> None:
            super().__init__()
            self.student_backbone = backbone
            self.student_head = DINOProjectionHead(input_dim, *HEAD, freeze_last_layer=1)
            self.teacher_backbone = copy.deepcopy(backbone)
            self.teacher_head = DINOProjectionHead(input_dim, *HEAD)
            deactivate_requires_grad(self.teacher_backbone)
            deactivate_requires_grad(self.teacher_head)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.student_backbone(x).flatten(start_dim=1)
            return self.student_head(y)

        def forward_teacher(self, x: torch.Tensor) -> torch.Tensor:
            y = self.teacher_backbone(x).flatten(start_dim=1)
            return self.teacher_head(y)

    model = DINO(build_backbone(spec), spec.dim)
    device = "cpu"
    model.to(device)
    transform = DINOTransform(
        global_crop_size=spec.image_size,
        global_crop_scale=tuple(m.global_crop_scale),
        local_crop_size=m.local_crop_size,
        local_crop_scale=tuple(m.local_crop_scale),
        n_local_views=m.n_local_views,
        hf_prob=m.hflip_prob,
        cj_prob=m.color_jitter_prob,
        cj_strength=m.color_jitter_strength,
        random_gray_scale=m.gray_scale_prob,
        gaussian_blur=tuple(m.blur_probs),
        solarization_prob=m.solarization_prob,
        normalize={"mean": list(spec.mean), "std": list(spec.std)},
    )
    dataset = ArrayImages(images, transform)
    dataloader = torch.utils.data.DataLoader(
        dataset,
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=args.workers,
    )
    criterion = DINOLoss(output_dim=HEAD[2], warmup_teacher_temp_epochs=WARMUP_TEACHER_TEMP_EPOCHS)
    criterion = criterion.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)

    epochs = math.ceil(args.steps / len(dataloader))
    rss = current_rss_mb()
    done = 0
    for epoch in range(epochs):
        momentum_val = cosine_schedule(epoch, epochs, 0.996, 1)
        for batch in dataloader:
            if done == args.steps:
                break
            views = batch[0]
            update_momentum(model.student_backbone, model.teacher_backbone, m=momentum_val)
            update_momentum(model.student_head, model.teacher_head, m=momentum_val)
            views = [view.to(device) for view in views]
            global_views = views[:2]
            teacher_out = [model.forward_teacher(view) for view in global_views]
            student_out = [model.forward(view) for view in views]
            loss = criterion(teacher_out, student_out, epoch=epoch)
            loss.backward()
            # We only cancel gradients of student head.
            model.student_head.cancel_last_layer_gradients(current_epoch=epoch)
            optimizer.step()
            optimizer.zero_grad()
            done += 1
            clock.tick()
    return rss


def child(args: argparse.Namespace) -> int:
    """One loop in this process; prints one JSON line (RESULT prefix) on stdout."""
    if args.torch_profile:
        return torch_profile(args)
    clock = StepClock(args.warmup, args.steps, args.cprofile)
    run = run_suite if args.run == "suite" else run_lightly
    rss_start = run_in_tmp(f"bench_ssl-{args.run}-", run, args, clock)
    return print_result(clock, args, rss_start_mb=rss_start)


def torch_profile(args: argparse.Namespace) -> int:
    """torch.profiler over the timed steps of one loop: where the main process spends its time."""
    from torch.profiler import ProfilerActivity, profile

    prof = profile(activities=[ProfilerActivity.CPU])

    class Clock:
        def __init__(self) -> None:
            self.times: list[float] = []

        def tick(self) -> None:
            self.times.append(time.perf_counter())
            if len(self.times) == args.warmup:
                prof.__enter__()
            if len(self.times) == args.steps:
                prof.__exit__(None, None, None)

    run = run_suite if args.run == "suite" else run_lightly
    run_in_tmp(f"bench_ssl-{args.run}-", run, args, Clock())
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
    print(RESULT + json.dumps({"loop": args.run, "profile": table}), flush=True)
    return 0


# --------------------------------------------------------------------------------------------------
# parent


def run_child(
    loop: str, args: argparse.Namespace, data: Path, n_train: int, flag: str | None = None
) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--run", loop, "--data", str(data)]
    cmd += ["--n-train", str(n_train)]
    names = (
        "arch",
        "image_size",
        "local_size",
        "n_local",
        "patch_size",
        "num_layers",
        "stem",
        "batch_size",
        "steps",
        "warmup",
        "workers",
        "seed",
    )
    cmd += report.forward(args, names)
    if flag:
        cmd.append(flag)
    return child_result(cmd, {**os.environ, "TQDM_DISABLE": "1"}, f"the {loop} run")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="vit_tiny", help="vit_tiny (default) or resnet18, ...")
    parser.add_argument("--image-size", type=int, default=32, help="global view size")
    parser.add_argument("--local-size", type=int, default=16, help="local view size")
    parser.add_argument("--n-local", type=int, default=4, help="local views per image")
    parser.add_argument("--patch-size", type=int, default=4, help="ViT patch size")
    parser.add_argument(
        "--num-layers", type=int, default=4, help="ViT depth (0: the preset's, 12 for vit_tiny)"
    )
    parser.add_argument("--stem", default="cifar", choices=("imagenet", "cifar"), help="ResNets")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=4, help="first steps, not timed")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers, both loops")
    parser.add_argument("--num-images", type=int, default=2000, help="Fashion-MNIST images read")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=2, help="runs of each loop; medians")
    parser.add_argument(
        "--torch-profile", action="store_true", help="print torch.profiler tables of both loops"
    )
    report.add_loop_options(parser, LOOPS)
    parser.add_argument("--n-train", type=int, default=0, help=argparse.SUPPRESS)
    args = report.parse_loop_args(parser, argv)
    if args.run is not None:
        return child(args)

    with report.bench_root("bench_ssl-", args.keep) as root:
        start = time.perf_counter()
        if (root / "shards" / "manifest.json").is_file() and (root / "train.npy").is_file():
            print(f"reusing the data in {root} (delete it to regenerate)")
        else:
            shutil.rmtree(root / "shards", ignore_errors=True)
            make_data(root, args.num_images, args.image_size)
            np.save(root / "train.npy", train_images(root / "shards"))
        images = np.load(root / "train.npy", mmap_mode="r")
        n_train = len(images)
        if images.shape[-1] != args.image_size:
            raise SystemExit(f"{root} holds {images.shape[-1]} px images; use another --keep")
        steps_per_epoch = n_train // args.batch_size
        print(
            f"data: {n_train} Fashion-MNIST train images 1x{args.image_size}x{args.image_size} "
            f"(of the first {args.num_images}, suite ingest), one shard set, the same uint8 arrays "
            f"for lightly; made in {time.perf_counter() - start:.1f} s; {steps_per_epoch} steps "
            "per epoch"
        )
        vit = args.arch.startswith("vit")
        print(
            f"backbone: {args.arch}"
            + (f" patch {args.patch_size}, {args.num_layers or 'preset'} layers" if vit else "")
            + ("" if vit else f" ({args.stem} stem)")
            + f"; views 2 x {args.image_size} px + {args.n_local} x {args.local_size} px; "
            f"head {HEAD}; batch {args.batch_size}; {args.workers} DataLoader workers each; "
            f"{args.steps} steps ({args.warmup} warm-up not timed)"
        )
        print(
            "lightly: examples/pytorch/dino.py loop (per-view forwards, DINOLoss(epoch=), "
            "cancel_last_layer_gradients, update_momentum of backbone and head, Adam lr 0.001)"
        )
        shown = suite_overrides(
            argparse.Namespace(**{**vars(args), "n_train": n_train}),
            Path("<shards>"),
            Path("<tmp>"),
        )
        report.print_start(BASE_CONFIG, shown, end="\n")

        def seen(r: int, loop: str, res: dict[str, Any]) -> None:
            print(
                f"round {r + 1} {loop:<8}{res['images_per_s']:8.1f} images/s  "
                f"median step {res['median_step_ms']:.0f} ms  slowest timed step "
                f"{max(res['step_ms'][args.warmup - 1 :]):.0f} ms  peak RSS "
                f"{res['peak_rss_mb']:.0f} MB",
                flush=True,
            )

        results = report.alternating_rounds(
            LOOPS, args.rounds, lambda loop: run_child(loop, args, root, n_train), seen
        )
        columns = [*report.rate_columns(9, 13), *report.RSS_COLUMNS, report.THREADS]
        med = report.print_table(results, 10, columns, lead="\n")
        paired = report.paired_ratios(results, "suite", "lightly")
        print(
            f"(medians over {args.rounds} round(s), order alternating; images/s over steps "
            f"{args.warmup + 1}..{args.steps}; ms/step = median step; RSS of the training "
            "process at the first step and peak at the end of the timed steps; worker peak = "
            "largest finished DataLoader worker)"
        )
        print(f"load average at end (1, 5, 15 min): {load()}")

        ratio = statistics.median(paired)
        if report.wants_profile(args, ratio):
            report.print_profiles(
                args, LOOPS, lambda loop: run_child(loop, args, root, n_train, "--cprofile")
            )
        if args.torch_profile:
            report.print_profiles(
                args,
                LOOPS,
                lambda loop: run_child(loop, args, root, n_train, "--torch-profile"),
                "torch.profiler",
            )
        step = med("lightly", "median_step_ms") / med("suite", "median_step_ms")
        memory = med("suite", "peak_rss_mb") / med("lightly", "peak_rss_mb")
        print(f"\nmedian-step speed suite/lightly: {step:.2f}x (less sensitive to load spikes)")
        print(f"peak RSS suite/lightly: {memory:.2f}x (training process)")
        print("per-round ratios suite/lightly images/s: " + " ".join(f"{p:.2f}" for p in paired))
        print(f"median ratio suite/lightly images/s: {ratio:.2f}x (goal >= 1.0x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
