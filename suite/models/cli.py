"""`synmed models tiny-sd --out DIR`: base models the suite builds itself.

suite/cli.py adds the group with ``add_parser(groups)``. diffusers and transformers are imported
only when the command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(groups: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``models`` group and its subcommands to the top-level ``synmed`` subparsers."""
    from suite.models.tiny_sd import DEFAULT_IMAGE_SIZE, DEFAULT_SEED

    group = groups.add_parser("models", help="build base models locally (tiny Stable Diffusion)")
    models = group.add_subparsers(dest="cmd", required=True)
    p = models.add_parser(
        "tiny-sd",
        help="a tiny random-weight Stable Diffusion 1.5-layout diffusers folder (for tests)",
        description=(
            "Write a StableDiffusionPipeline with random weights (UNet2DConditionModel, "
            "AutoencoderKL, CLIPTextModel, the CLIP tokenizer built offline from open-clip-torch's "
            "BPE vocabulary, PNDM scheduler; no safety checker) into DIR in SD 1.5's folder "
            "layout, loadable with StableDiffusionPipeline.from_pretrained(DIR, "
            "local_files_only=True). About 12 MB; the same seed writes the same files."
        ),
    )
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="the folder to create")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="the random weights' seed")
    p.add_argument(
        "--image-size",
        type=int,
        default=DEFAULT_IMAGE_SIZE,
        metavar="N",
        help=f"the default image size in pixels, a multiple of 8 (default {DEFAULT_IMAGE_SIZE})",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a DIR that an earlier synmed command wrote",
    )
    p.set_defaults(func=cmd_models_tiny_sd)
    return group


def cmd_models_tiny_sd(args: argparse.Namespace) -> int:
    from suite.models.tiny_sd import write_tiny_sd

    out = write_tiny_sd(
        args.out, seed=args.seed, image_size=args.image_size, overwrite=args.overwrite
    )
    print(f"wrote {out} (StableDiffusionPipeline, {args.image_size} px, seed {args.seed})")
    return 0
