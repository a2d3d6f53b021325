"""`synmed train generator CONFIG [overrides] [--resume [--allow-config-change] | --auto-resume | --restart]`.

suite/cli.py adds it to the ``train`` group with ``add_parser(train_subparsers)``. Heavy imports
(torch, diffusers) happen only when it runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from suite.cli import add_config_args
from suite.train.cli_options import add_resume_args, resume_options


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``generator`` to the ``synmed train`` subcommands."""
    p = subparsers.add_parser(
        "generator", help="train a DDPM generator on a shard set (Accelerate)"
    )
    add_config_args(p)
    add_resume_args(p)
    p.add_argument(
        "--each-class",
        action="store_true",
        help="a per_class DCGAN: one run per class (RUN/classes/*), then merged into RUN/export",
    )
    p.set_defaults(func=cmd_train_generator)
    return p


def add_group_parser(groups: argparse._SubParsersAction) -> None:
    """Add ``synmed generator merge-classes`` and ``init`` to the top-level subcommands."""
    group = groups.add_parser("generator", help="generator exports").add_subparsers(
        dest="generator_command", required=True
    )
    p = group.add_parser(
        "merge-classes",
        help="merge the class runs of a per_class DCGAN (--each-class) into RUN/export",
    )
    p.add_argument("run", type=Path, help="the run folder the merged export goes to")
    p.add_argument(
        "parts", type=Path, nargs="*", help="the class runs (default: every RUN/classes/*)"
    )
    p.set_defaults(func=cmd_merge_classes)
    p = group.add_parser(
        "init",
        help="export a config's generator before any training (a LoRA family: its base model)",
    )
    add_config_args(p)
    p.add_argument("--out", type=Path, required=True, help="the export folder to create")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=cmd_init)


def cmd_train_generator(args: argparse.Namespace) -> int:
    from suite.generative.train import train_generator
    from suite.schema import load_config
    from suite.train.monitor import throughput_line

    options = resume_options(args)  # before the config: flags are cheaper
    cfg = load_config(args.config, args.overrides)
    if args.each_class:
        from suite.generative.per_class import train_each_class

        result = train_each_class(cfg, **options)
    else:
        result = train_generator(cfg, **options)
    if "stopped_at" in result:
        print(f"stopped at step {result['stopped_at']} by a signal; continue with --resume")
    elif result:
        print(f"trained {result['model']} to step {result['steps']}: {result['run']}")
        print(f"  EMA export: {result['export']}")
        if line := throughput_line(result):
            print(line)
    return 0


def cmd_merge_classes(args: argparse.Namespace) -> int:
    from suite.generative.per_class import CLASSES_DIR, merge_class_exports

    parts = args.parts or sorted(p for p in (args.run / CLASSES_DIR).glob("*") if p.is_dir())
    digest = merge_class_exports(parts, args.run)
    print(f"merged {len(parts)} class runs into {args.run / 'export'} (sha256 {digest})")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from suite.generative.export import export_initial
    from suite.schema import load_config

    cfg = load_config(args.config, args.overrides)
    digest = export_initial(cfg, args.out, overwrite=args.overwrite)
    print(f"exported the untrained {cfg.model.kind} generator to {args.out} (sha256 {digest})")
    return 0
