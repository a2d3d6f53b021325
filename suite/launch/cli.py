"""`synmed submit STAGE CONFIG`, `synmed launch -- COMMAND` and `synmed jobs`: SLURM jobs.

suite/cli.py adds all three with ``add_parser(groups)``; the work is in :mod:`suite.launch.submit`
and :mod:`suite.launch.node`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from suite.cli import add_config_args
from suite.errors import SynmedError


def add_parser(groups: argparse._SubParsersAction) -> None:
    """Add ``submit``, ``launch`` and ``jobs`` to the top-level ``synmed`` subparsers."""
    from suite.launch.submit import STAGES

    p = groups.add_parser(
        "submit", help="submit a stage to SLURM with Submitit (multi-node, requeue)"
    )
    p.add_argument("stage", choices=sorted(STAGES))
    add_config_args(p)
    p.add_argument("--nodes", type=int, default=1)
    p.add_argument("--gpus-per-node", type=int, default=0)
    p.add_argument("--tasks-per-node", type=int, help="default: one per GPU (1 without GPUs)")
    p.add_argument("--cpus-per-task", type=int, default=2)
    p.add_argument("--mem-gb", type=float)
    p.add_argument("--partition")
    p.add_argument("--time", default="60", help="minutes, H:MM:SS or D-HH:MM:SS")
    p.add_argument("--signal-delay", type=int, default=120, help="seconds before the limit to save")
    p.add_argument("--array", metavar="KEY=V1,V2,...", help="a sweep: one array task per value")
    p.add_argument(
        "--each-class",
        action="store_true",
        help="a per_class DCGAN: one array task per class, then a job merging them into RUN/export",
    )
    p.add_argument("--after", metavar="JOBID", help="start after this job completed (afterok)")
    p.add_argument(
        "--wait", action="store_true", help="wait for the jobs and report how they ended"
    )
    p.set_defaults(func=cmd_submit)
    p = groups.add_parser(
        "launch", help="one SLURM task per node: run a synmed command under accelerate launch"
    )
    p.add_argument("--procs-per-node", type=int, required=True, help="processes (GPUs) per node")
    p.add_argument(
        "command", nargs=argparse.REMAINDER, help="-- the synmed command, e.g. train generator CFG"
    )
    p.set_defaults(func=cmd_launch)
    p = groups.add_parser("jobs", help="jobs submitted with synmed submit: state and log")
    p.add_argument("--runs", type=Path, default=Path("runs"), help="the run.out_dir they used")
    p.set_defaults(func=cmd_jobs)


def cmd_submit(args: argparse.Namespace) -> int:
    from suite.launch.submit import Resources, format_jobs, parse_time, read_jobs, submit, wait_for

    res = Resources(
        nodes=args.nodes,
        gpus_per_node=args.gpus_per_node,
        tasks_per_node=args.tasks_per_node,
        cpus_per_task=args.cpus_per_task,
        mem_gb=args.mem_gb,
        partition=args.partition,
        time_min=parse_time(args.time),
        signal_delay_s=args.signal_delay,
    )
    jobs = submit(
        args.stage,
        args.config,
        args.overrides,
        res,
        sweep=args.array,
        after=args.after,
        each_class=args.each_class,
    )
    for i, job in enumerate(jobs):
        # --each-class: the last job merges the array's class runs
        stage = "merge-classes" if args.each_class and i == len(jobs) - 1 else args.stage
        print(
            f"submitted {stage} as job {job.job_id}; log {str(job.paths.stderr).replace('%t', '0')}"
        )
    if not args.wait:
        return 0
    from suite.schema import load_config

    states = wait_for(jobs)
    out_dir = load_config(args.config, args.overrides).run.out_dir
    ids = {str(j.job_id) for j in jobs}
    print(format_jobs([r for r in read_jobs(out_dir) if r["job_id"] in ids], states))
    failed = [j for j, s in states.items() if s != "COMPLETED"]
    for job_id in failed:
        record = next(r for r in read_jobs(out_dir) if r["job_id"] == job_id)
        print(
            f"error: job {job_id} ended {states[job_id]}; log: {record['stderr']}", file=sys.stderr
        )
    return 1 if failed else 0


def cmd_launch(args: argparse.Namespace) -> int:
    from suite.launch.node import launch_per_node

    command = [a for a in args.command if a != "--"]
    if not command:
        raise SynmedError(
            "synmed launch needs a synmed command after --", "e.g. -- train generator CONFIG"
        )
    return launch_per_node(args.procs_per_node, command)


def cmd_jobs(args: argparse.Namespace) -> int:
    from suite.launch.submit import format_jobs, job_states, read_jobs

    records = read_jobs(args.runs)
    print(format_jobs(records, job_states([r["job_id"] for r in records])))
    return 0
