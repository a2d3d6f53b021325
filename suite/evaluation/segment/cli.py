"""`synmed evaluate segment CONFIG [KEY=VALUE ...]`: train and score U-Nets on image+mask shards.

suite/evaluation/cli.py adds it to the ``evaluate`` group with ``add_parser(subparsers)``. Heavy
imports (torch, MONAI, matplotlib) happen only when it runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``segment`` to the ``synmed evaluate`` subparsers."""
    p = subparsers.add_parser(
        "segment",
        help="2D U-Net segmentation (MONAI Dice+CE, AdamW): real, real+synthetic or merging masks",
        description=(
            "Train a U-Net (conv encoder, a ResNet encoder optionally initialised from an SSL "
            "backbone export, or MONAI's UNet / AttentionUnet) per seed on data.shards (plus data.synthetic), keep the epoch with "
            "the best validation Dice, and score the report split per case: Dice, IoU, precision, "
            "recall, HD95. Writes OUT/result.json, per_case.csv, cases.png, history.json."
        ),
    )
    p.add_argument(
        "config", type=Path, help="a YAML file, e.g. configs/evaluate/segment_mni152.yaml"
    )
    p.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides (train.epochs=5 ...)"
    )
    p.add_argument("--out", type=Path, help="the folder to create (default: run.out_dir/run.name)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=segment_command)
    return p


def segment_command(args: argparse.Namespace) -> int:
    """Run the evaluation and print the headline numbers."""
    from suite.evaluation.segment.config import load_segment_config
    from suite.evaluation.segment.run import RESULT, evaluate_segmentation

    cfg = load_segment_config(args.config, args.overrides)
    out = args.out if args.out is not None else cfg.run.out_dir / cfg.run.name
    result = evaluate_segmentation(cfg, out, overwrite=args.overwrite)
    ctx = result["context"]
    folds = f"{ctx['folds']['k']} folds by group, " if "folds" in ctx else ""
    print(
        f"segment: {ctx['encoder']['encoder']} encoder, {ctx['training_data']['kind']} training "
        f"data, {folds}seeds {ctx['seeds']}, {ctx['num_cases']} {ctx['report_split']} case(s)"
    )
    for name, m in result["metrics"].items():
        print(f"  {name:<9} {m['mean']:.4f} ± {m['std']:.4f}")
    print(f"wrote {out / RESULT}")
    return 0
