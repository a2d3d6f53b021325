"""`synmed pretrain CONFIG [overrides] [--resume [--allow-config-change] | --auto-resume | --restart]`: DINO or SimCLR on shard sets.

suite/cli.py adds it with ``add_parser(groups)``. Heavy imports (torch, lightly) happen only when
it runs.
"""

from __future__ import annotations

import argparse

from suite.cli import add_config_args
from suite.train.cli_options import add_resume_args, resume_options


def add_parser(groups: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``pretrain`` to the top-level ``synmed`` subparsers."""
    p = groups.add_parser(
        "pretrain", help="self-supervised pretraining (DINO, SimCLR) on shard sets (Accelerate)"
    )
    add_config_args(p)
    add_resume_args(p)
    p.set_defaults(func=cmd_pretrain)
    return p


def cmd_pretrain(args: argparse.Namespace) -> int:
    from suite.schema import load_config
    from suite.ssl.train import pretrain
    from suite.train.monitor import throughput_line

    options = resume_options(args)  # before the config: flags are cheaper
    result = pretrain(load_config(args.config, args.overrides), **options)
    if "stopped_at" in result:
        print(f"stopped at step {result['stopped_at']} by a signal; continue with --resume")
    elif result:
        knn = result.get("knn_accuracy")
        print(
            f"pretrained {result['arch']} with {result['method']} for {result['epochs']:.0f} epochs "
            f"({result['steps']} steps): {result['run']}"
            + (f"; kNN accuracy {knn:.3f}" if knn is not None else "")
        )
        print(f"  backbone export: {result['export']}")
        if line := throughput_line(result):
            print(line)
    return 0
