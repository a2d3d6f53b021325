"""The `synmed` command (also `python -m suite`). Parsing only: every command calls into the library.

Errors caused by input (a :class:`~suite.errors.SynmedError`) print as one message with its fix and
exit with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from suite.errors import SynmedError

EXIT_INPUT_ERROR = 2


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="a YAML config under configs/")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. data.image_size=128")


# -- config ----------------------------------------------------------------------------------------


def cmd_config_show(args: argparse.Namespace) -> int:
    from suite.config import config_digest, dump_yaml, load_config

    cfg = load_config(args.config, args.overrides)
    print(
        f"# resolved from {args.config}"
        + (f" with {' '.join(args.overrides)}" if args.overrides else "")
    )
    print(f"# digest {config_digest(cfg)}")
    print(dump_yaml(cfg), end="")
    return 0


# -- data ------------------------------------------------------------------------------------------


# IngestOptions fields that become `synmed data ingest --flag VALUE` options (values parsed as YAML).
def _ingest_fields() -> list[tuple[str, Any]]:
    from suite.data.ingest.options import IngestOptions

    hints = get_type_hints(IngestOptions)
    return [(f.name, hints[f.name]) for f in dataclasses.fields(IngestOptions)]


def _is_sequence(tp: Any) -> bool:
    return get_origin(tp) in (list, tuple) or any(
        get_origin(a) in (list, tuple) for a in get_args(tp)
    )


def _add_ingest_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ingest",
        help="read a dataset (folder, NIH CSV, COVIDx, MedMNIST, DICOM, NIfTI, IDX) into a shard set",
        description="Read SOURCE into the shard set OUT. SOURCE is a path or demo:NAME (see `synmed data demo`).",
    )
    p.add_argument(
        "source", nargs="?", help="file, folder or demo:NAME (or data.source in --config)"
    )
    p.add_argument("--out", required=True, type=Path, help="the shard set folder to create")
    p.add_argument("--config", help="a YAML config whose data: section sets the options")
    p.add_argument(
        "--overwrite", action="store_true", help="replace an existing shard set in --out"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    for name, tp in _ingest_fields():
        flag = "--" + name.replace("_", "-")
        if name == "mask":
            p.add_argument(
                flag,
                action="append",
                metavar="PATH",
                help="mask volume(s) for NIfTI; repeat for several",
            )
        else:
            hint = "comma-separated list" if _is_sequence(tp) else "value"
            p.add_argument(flag, metavar=name.upper(), help=f"data.{name} ({hint})")
    p.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="more dotted overrides (data.seed=1 ...)"
    )
    p.set_defaults(func=cmd_data_ingest)


def cmd_data_ingest(args: argparse.Namespace) -> int:
    from suite.config import DataConfig, load_config
    from suite.data.demo import resolve_source
    from suite.data.info import describe, format_info
    from suite.data.ingest.options import IngestOptions
    from suite.data.ingest.pipeline import ingest

    overrides = list(args.overrides)
    for name, tp in _ingest_fields():
        value = getattr(args, name)
        if value is None:
            continue
        if name == "mask":
            value = "[" + ", ".join(value) + "]"
        elif _is_sequence(tp) and not value.lstrip().startswith("["):
            value = "[" + value + "]"
        overrides.append(f"data.{name}={value}")
    cfg = load_config(args.config, overrides)
    source = args.source or cfg.data.source
    if source is None:
        raise SynmedError("no source given", "pass SOURCE, or set data.source in the --config file")
    path, demo_options = resolve_source(str(source))
    if demo_options:  # demo defaults apply where the user did not choose
        given = {o.split("=", 1)[0].removeprefix("data.") for o in overrides}
        extra = [f"data.{k}={_yaml_value(v)}" for k, v in demo_options.items() if k not in given]
        cfg = load_config(args.config, extra + overrides)
    data: DataConfig = cfg.data
    options = IngestOptions(
        **{f.name: getattr(data, f.name) for f in dataclasses.fields(IngestOptions)}
    )
    ingest(path, args.out, options, overwrite=args.overwrite, progress=not args.quiet)
    print(format_info(describe(args.out)))
    print(f"wrote {args.out}")
    return 0


def _yaml_value(value: Any) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def cmd_data_verify(args: argparse.Namespace) -> int:
    from suite.data.verify import verify_shard_set

    status = 0
    for directory in args.dirs:
        report = verify_shard_set(directory, digests=not args.no_digests)
        for warning in report.warnings:
            print(f"warning: {directory}: {warning}", file=sys.stderr)
        print(
            f"ok {directory}: {report.count} images in {report.shards} shard(s), shape {report.image_shape}"
        )
    return status


def cmd_data_info(args: argparse.Namespace) -> int:
    from suite.data.info import describe, format_info, info_json

    print(info_json(args.dir) if args.json else format_info(describe(args.dir)))
    return 0


def cmd_data_export(args: argparse.Namespace) -> int:
    from suite.data.export import export_folder

    n = export_folder(
        args.dir, args.to, split=args.split, limit=args.limit, overwrite=args.overwrite
    )
    print(f"exported {n} images to {args.to} (images/, labels.csv)")
    return 0


def cmd_data_merge(args: argparse.Namespace) -> int:
    from suite.data.merge import merge_shard_sets

    n = merge_shard_sets(
        args.inputs, args.out, shard_size=args.shard_size, overwrite=args.overwrite
    )
    print(f"merged {len(args.inputs)} sets, {n} images, into {args.out}")
    return 0


def cmd_data_demo(args: argparse.Namespace) -> int:
    from suite.data.demo import DEMOS, resolve_source

    for name, demo in DEMOS.items():
        try:
            where = str(resolve_source(f"demo:{name}")[0])
        except SynmedError as err:
            where = f"not installed ({err.fix})"
        print(f"demo:{name:<14} {demo.description}\n  {where}")
    return 0


# -- train ---------------------------------------------------------------------------------------


def cmd_train_generator(args: argparse.Namespace) -> int:
    from suite.config import load_config
    from suite.generative.train import train_generator

    resume = "auto" if args.auto_resume else "yes" if args.resume else "no"
    result = train_generator(load_config(args.config, args.overrides), resume=resume)
    if "stopped_at" in result:
        print(f"stopped at step {result['stopped_at']} by a signal; continue with --resume")
    elif result:
        print(f"trained {result['model']} to step {result['steps']}: {result['run']}")
        print(f"  EMA export: {result['export']}")
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    from suite.config import load_config
    from suite.ssl.train import pretrain

    resume = "auto" if args.auto_resume else "yes" if args.resume else "no"
    result = pretrain(load_config(args.config, args.overrides), resume=resume)
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
    return 0


# -- sample --------------------------------------------------------------------------------------


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
    )
    rate = summary["images_per_s"]
    print(
        f"{summary['images']} images in {summary['shards']} shard(s) at {args.out} "
        f"({summary['sampled_this_run']} sampled now"
        + (f", {rate:.2f} images/s" if rate else "")
        + ")"
    )
    print(f"  summary {args.out / 'sample_summary.json'}, grid {args.out / 'samples.png'}")
    return 0


# -- submit / jobs -------------------------------------------------------------------------------


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
    jobs = submit(args.stage, args.config, args.overrides, res, sweep=args.array, after=args.after)
    for job in jobs:
        print(
            f"submitted {args.stage} as job {job.job_id}; log {str(job.paths.stderr).replace('%t', '0')}"
        )
    if not args.wait:
        return 0
    from suite.config import load_config

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


# -- parser ----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from suite import __version__

    parser = argparse.ArgumentParser(
        prog="synmed",
        description="Synthetic medical images -> self-supervised pretraining -> evaluation, on SLURM and Ray.",
    )
    parser.add_argument("--version", action="version", version=f"synmed-suite {__version__}")
    groups = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")

    config = groups.add_parser("config", help="show and check configs").add_subparsers(
        dest="cmd", required=True
    )
    show = config.add_parser(
        "show", help="print the resolved config (after overrides) and its digest"
    )
    _add_config_args(show)
    show.set_defaults(func=cmd_config_show)

    train = groups.add_parser("train", help="train a model (generator)").add_subparsers(
        dest="cmd", required=True
    )
    p = train.add_parser("generator", help="train a DDPM generator on a shard set (Accelerate)")
    _add_config_args(p)
    resume = p.add_mutually_exclusive_group()
    resume.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    resume.add_argument(
        "--auto-resume", action="store_true", help="continue if there is a checkpoint (for jobs)"
    )
    p.set_defaults(func=cmd_train_generator)

    p = groups.add_parser(
        "pretrain", help="self-supervised pretraining (DINO, SimCLR) on shard sets (Accelerate)"
    )
    _add_config_args(p)
    resume = p.add_mutually_exclusive_group()
    resume.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    resume.add_argument(
        "--auto-resume", action="store_true", help="continue if there is a checkpoint (for jobs)"
    )
    p.set_defaults(func=cmd_pretrain)

    p = groups.add_parser(
        "sample", help="sample N images from a trained generator into shards (Ray Data)"
    )
    p.add_argument("--checkpoint", required=True, type=Path, help="a run folder (or its export/)")
    p.add_argument("--num-images", type=int)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--per-class", type=int, help="images per class (class-conditional models)")
    group.add_argument("--class-weights", help="comma-separated class proportions")
    p.add_argument("--shard-size", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=32, help="images per model call")
    p.add_argument(
        "--sampler",
        default="ddpm",
        help="one the generator family declares (diffusion families: ddpm, ddim, dpm-solver)",
    )
    p.add_argument("--sampling-steps", type=int, default=1000)
    p.add_argument(
        "--guidance-scale", type=float, help="classifier-free guidance (default: the model's)"
    )
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
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=cmd_sample)

    from suite.evaluation.cli import add_evaluate_parser
    from suite.features.cli import add_cluster_parser

    add_cluster_parser(groups)
    add_evaluate_parser(groups)
    from suite.pipeline.cli import add_parser as add_run_parser

    add_run_parser(groups)
    from suite.report.cli import add_parser as add_report_parser

    add_report_parser(groups)

    from suite.launch.submit import STAGES

    p = groups.add_parser(
        "submit", help="submit a stage to SLURM with Submitit (multi-node, requeue)"
    )
    p.add_argument("stage", choices=sorted(STAGES))
    _add_config_args(p)
    p.add_argument("--nodes", type=int, default=1)
    p.add_argument("--gpus-per-node", type=int, default=0)
    p.add_argument("--tasks-per-node", type=int, help="default: one per GPU (1 without GPUs)")
    p.add_argument("--cpus-per-task", type=int, default=2)
    p.add_argument("--mem-gb", type=float)
    p.add_argument("--partition")
    p.add_argument("--time", default="60", help="minutes, H:MM:SS or D-HH:MM:SS")
    p.add_argument("--signal-delay", type=int, default=120, help="seconds before the limit to save")
    p.add_argument("--array", metavar="KEY=V1,V2,...", help="a sweep: one array task per value")
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

    data = groups.add_parser(
        "data", help="shard sets: ingest, verify, info, export, merge"
    ).add_subparsers(dest="cmd", required=True)
    _add_ingest_parser(data)
    p = data.add_parser(
        "verify", help="check counts, sha256 digests and schema; non-zero exit on a problem"
    )
    p.add_argument("dirs", nargs="+", type=Path)
    p.add_argument(
        "--no-digests", action="store_true", help="skip sha256 (only structure and counts)"
    )
    p.set_defaults(func=cmd_data_verify)
    p = data.add_parser("info", help="what a shard set holds")
    p.add_argument("dir", type=Path)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_data_info)
    p = data.add_parser("export", help="write a shard set as PNG files plus labels.csv")
    p.add_argument("dir", type=Path)
    p.add_argument("--to", required=True, type=Path, help="the folder to create")
    p.add_argument("--split", choices=("train", "val", "test"))
    p.add_argument("--limit", type=int)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_data_export)
    p = data.add_parser("merge", help="merge shard sets into one (joint class list, new index)")
    p.add_argument("inputs", nargs="+", type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--shard-size", type=int, default=2048)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_data_merge)
    p = data.add_parser(
        "demo", help="list the demo:NAME sources (real data shipped in installed packages)"
    )
    p.set_defaults(func=cmd_data_demo)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse, letting dotted overrides (KEY=VALUE) stand anywhere, also after options."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    stray = [e for e in extra if "=" not in e or e.startswith("-")]
    if stray or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        args.overrides = list(args.overrides or []) + extra
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SynmedError as err:
        print(f"error: {err.what}", file=sys.stderr)
        if err.fix:
            print(f"  fix: {err.fix}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
