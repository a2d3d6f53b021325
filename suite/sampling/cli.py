"""`synmed sample --checkpoint RUN [--checkpoint-step N] --num-images N --out SET`: a trained
generator (its export, or one saved checkpoint) into shards.

suite/cli.py adds it with ``add_parser(groups)``. Heavy imports (torch, Ray) happen only when it
runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(groups: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``sample`` to the top-level ``synmed`` subparsers."""
    p = groups.add_parser(
        "sample", help="sample N images from a trained generator into shards (Ray Data)"
    )
    p.add_argument("--checkpoint", required=True, type=Path, help="a run folder (or its export/)")
    p.add_argument(
        "--checkpoint-step",
        type=int,
        metavar="N",
        help="sample the run's saved checkpoint of step N (its EMA weights) instead of its export",
    )
    p.add_argument("--num-images", type=int)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--per-class", type=int, help="images per class (class-conditional models)")
    group.add_argument("--class-weights", help="comma-separated class proportions")
    p.add_argument("--shard-size", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=32, help="images per model call")
    p.add_argument(
        "--sampler",
        help="one the generator family declares (diffusion families: ddpm, ddim, dpm-solver, "
        "dpm-solver-3m, unipc; "
        "GANs: gan); default: the family's first",
    )
    p.add_argument("--sampling-steps", type=int, default=1000)
    p.add_argument(
        "--guidance-scale", type=float, help="classifier-free guidance (default: the model's)"
    )
    p.add_argument(
        "--prompt", help="text-to-image models: this prompt for every row (not the class prompts)"
    )
    p.add_argument("--negative-prompt", help="text-to-image models: the guidance's negative prompt")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="actors (one model per GPU or CPU slot)")
    p.add_argument(
        "--ray-address", help="join this Ray cluster (default: $RAY_ADDRESS or a local Ray)"
    )
    p.add_argument(
        "--conditions",
        type=Path,
        help="a shard set whose rows condition the output (labels, masks, edge maps, prompts)",
    )
    p.add_argument(
        "--conditions-split",
        choices=("train", "val", "test", "all"),
        default="train",
        help="which rows of --conditions to read",
    )
    p.add_argument("--per-condition", type=int, help="output rows per conditioning row")
    p.add_argument(
        "--accept",
        type=Path,
        help="a classifier exported by synmed evaluate classify (OUT/finetune/seed-N): rows it "
        "does not classify as their class are drawn again",
    )
    p.add_argument(
        "--min-confidence",
        type=float,
        help="with --accept: the softmax probability of the row's class it must reach "
        "(in (0, 1], default 0.5)",
    )
    p.add_argument(
        "--max-attempts",
        type=int,
        help="with --accept: draws per index before it is kept flagged accepted=false (default 10)",
    )
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=cmd_sample)
    return p


def cmd_sample(args: argparse.Namespace) -> int:
    from suite.sampling.job import run_sampling

    weights = [float(w) for w in args.class_weights.split(",")] if args.class_weights else None
    summary = run_sampling(
        args.checkpoint,
        args.out,
        num_images=args.num_images,
        per_class=args.per_class,
        class_weights=weights,
        shard_size=args.shard_size,
        batch_size=args.batch_size,
        sampler=args.sampler,
        steps=args.sampling_steps,
        seed=args.seed,
        guidance_scale=args.guidance_scale,
        workers=args.workers,
        ray_address=args.ray_address,
        conditions=args.conditions,
        conditions_split=None if args.conditions_split == "all" else args.conditions_split,
        per_condition=args.per_condition,
        prompt=args.prompt,
        negative_prompt=args.negative_prompt,
        accept=args.accept,
        min_confidence=args.min_confidence,
        max_attempts=args.max_attempts,
        checkpoint_step=args.checkpoint_step,
    )
    rate = summary["images_per_s"]
    print(
        f"{summary['images']} images in {summary['shards']} shard(s) at {args.out} "
        f"({summary['sampled_this_run']} sampled now"
        + (f", {rate:.2f} images/s" if rate else "")
        + ")"
    )
    acceptance = summary.get("acceptance")
    if acceptance:
        print("  " + acceptance_line(acceptance))
    print(f"  summary {args.out / 'sample_summary.json'}, grid {args.out / 'samples.png'}")
    return 0


def acceptance_line(acceptance: dict) -> str:
    """``accepted 14/16 (88%); per class a 100%, b 75%; 2 indices ran out of 3 attempts``."""
    per_class = ", ".join(
        f"{name} {c['rate']:.0%}" if c["rate"] is not None else f"{name} -"
        for name, c in acceptance["per_class"].items()
    )
    total = sum(c["rows"] for c in acceptance["per_class"].values())
    return (
        f"accepted {acceptance['accepted']}/{total} ({acceptance['rate']:.0%}); per class "
        f"{per_class}; {acceptance['ran_out']} indices ran out of {acceptance['max_attempts']} "
        "attempts (kept with accepted=false)"
    )
