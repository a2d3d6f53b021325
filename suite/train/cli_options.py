"""The options of the training commands beyond ``--resume | --auto-resume`` (torch-free)."""

from __future__ import annotations

import argparse

from suite.errors import ConfigError


def add_rerun_args(p: argparse.ArgumentParser) -> None:
    """``--allow-config-change`` and ``--restart``; read back with :func:`rerun_options`."""
    p.add_argument(
        "--allow-config-change",
        action="store_true",
        help="with --resume: continue with changed optimisation keys (train.lr, ...); the run "
        "records the changes",
    )
    p.add_argument(
        "--restart",
        action="store_true",
        help="start the run over in the same folder, its checkpoints moved aside (not deleted)",
    )


def rerun_options(args: argparse.Namespace, resume: str) -> dict[str, object]:
    """``resume`` and ``allow_config_change`` for the training entry points, checked together."""
    resuming = resume in ("yes", "auto")
    if args.restart and resuming:
        raise ConfigError(
            "--restart and --resume/--auto-resume contradict each other",
            "pass --resume to continue the run, or --restart to start it over",
        )
    if args.allow_config_change and not resuming:
        raise ConfigError(
            "--allow-config-change applies to a resumed run only",
            "add --resume (a new run takes any config)",
        )
    return {
        "resume": "restart" if args.restart else resume,
        "allow_config_change": bool(args.allow_config_change),
    }
