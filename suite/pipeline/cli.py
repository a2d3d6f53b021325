"""`synmed run CONFIG [overrides] [--until STAGE] [--only STAGE] [--force] [--on local|slurm]`."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(groups: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = groups.add_parser(
        "run",
        help="run a paper's stages (ingest ... report) in one run folder, here or on SLURM",
        description=(
            "Run the stages a run config lists, in order, in run.out_dir/run.name. Complete stages "
            "with the same config are skipped; a stage whose config changed is refused unless "
            "--force. --on local runs everything in this process (local Ray); --on slurm submits "
            "one job per stage, each depending on the one before."
        ),
    )
    p.add_argument("config", type=Path, help="a run config (e.g. configs/quickstart.yaml)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--until", metavar="STAGE", help="stop after this stage")
    which.add_argument("--only", metavar="STAGE", help="run only this stage")
    p.add_argument(
        "--force", action="store_true", help="re-run the selected stages, replacing them"
    )
    p.add_argument(
        "--fold",
        type=int,
        metavar="K",
        help="a cross-validated run (a folds stage): only fold K's stages",
    )
    p.add_argument("--on", choices=("local", "slurm"), default="local")
    p.add_argument(
        "--dry-run", action="store_true", help="check every stage's config and print the plan"
    )
    p.set_defaults(func=run_command)
    return p


def run_command(args: argparse.Namespace) -> int:
    from suite.config import load_config
    from suite.pipeline.config import PipelineConfig
    from suite.pipeline.runner import plan, run_local, submit_slurm

    cfg = load_config(args.config, args.overrides, schema=PipelineConfig)
    run_dir, steps = plan(cfg, until=args.until, only=args.only, force=args.force, fold=args.fold)
    if args.dry_run:
        print(f"run folder {run_dir}")
        for step in steps:
            print(f"  {step.label:21s} {step.action:5s} {step.digest[:12]}  {step.reason}")
        return 0
    if args.on == "slurm":
        submit_slurm(str(args.config), list(args.overrides), cfg, steps, run_dir, force=args.force)
        print(f"synmed run: jobs listed by: synmed jobs --runs {run_dir}")
        return 0
    if not run_local(cfg, steps, run_dir, force=args.force):
        return 3
    report = run_dir / "report" / "report.md"
    print(f"synmed run: done: {run_dir}" + (f"\n  report: {report}" if report.is_file() else ""))
    return 0
