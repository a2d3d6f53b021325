"""`synmed train generator CONFIG [overrides] [--resume [--allow-config-change] | --auto-resume | --restart]`.

suite/cli.py adds it to the ``train`` group with ``add_parser(train_subparsers)``. Heavy imports
(torch, diffusers) happen only when it runs.
"""

from __future__ import annotations

import argparse

from suite.cli import add_config_args
from suite.train.cli_options import add_resume_args, resume_options


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``generator`` to the ``synmed train`` subcommands."""
    p = subparsers.add_parser(
        "generator", help="train a DDPM generator on a shard set (Accelerate)"
    )
    add_config_args(p)
    add_resume_args(p)
    p.set_defaults(func=cmd_train_generator)
    return p


def cmd_train_generator(args: argparse.Namespace) -> int:
    from suite.generative.train import train_generator
    from suite.schema import load_config

    options = resume_options(args)  # before the config: flags are cheaper
    result = train_generator(load_config(args.config, args.overrides), **options)
    if "stopped_at" in result:
        print(f"stopped at step {result['stopped_at']} by a signal; continue with --resume")
    elif result:
        print(f"trained {result['model']} to step {result['steps']}: {result['run']}")
        print(f"  EMA export: {result['export']}")
    return 0
