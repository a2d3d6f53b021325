"""The resume options of the training commands (`synmed train generator`, `synmed pretrain`).

Torch-free: the parser is built without importing the trainers.
"""

from __future__ import annotations

import argparse

from suite.errors import ConfigError


def add_resume_args(p: argparse.ArgumentParser) -> None:
    """``--resume | --auto-resume``, ``--allow-config-change`` and ``--restart``; read back with
    :func:`resume_options`."""
    resume = p.add_mutually_exclusive_group()
    resume.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    resume.add_argument(
        "--auto-resume", action="store_true", help="continue if there is a checkpoint (for jobs)"
    )
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


def resume_options(args: argparse.Namespace) -> dict[str, object]:
    """``resume`` ("no", "yes", "auto" or "restart") and ``allow_config_change`` for the training
    entry points, the flags checked together."""
    resume = "auto" if args.auto_resume else "yes" if args.resume else "no"
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
