"""`synmed data ingest|verify|info|export|merge|edges|augment|folds|demo`: shard sets in and out.

suite/cli.py adds the group with ``add_parser(groups)``. Heavy imports (numpy, h5py, the format
readers) happen only when a command runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from suite.errors import SynmedError


def add_parser(groups: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``data`` group and its subcommands to the top-level ``synmed`` subparsers."""
    group = groups.add_parser(
        "data", help="shard sets: ingest, verify, info, export, merge, edges, augment, folds"
    )
    data = group.add_subparsers(dest="cmd", required=True)
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
        "edges",
        help="edge maps (mask boundary + Canny) of a set with masks, as a conditioning set",
    )
    p.add_argument("dir", type=Path, help="a shard set with masks")
    p.add_argument("--out", required=True, type=Path, help="the conditioning set to create")
    p.add_argument("--canny-sigma", type=float, default=1.0, help="Gaussian sigma (pixels)")
    p.add_argument("--canny-low", type=float, default=0.1, help="low hysteresis threshold")
    p.add_argument("--canny-high", type=float, default=0.2, help="high hysteresis threshold")
    p.add_argument(
        "--hed",
        type=Path,
        metavar="WEIGHTS",
        help="HED edges from this local network-bsds500.pth instead of Canny (the seed's choice)",
    )
    p.add_argument("--shard-size", type=int, default=2048)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_data_edges)
    _add_augment_parser(data)
    p = data.add_parser(
        "folds",
        help="K cross-validation folds by group: OUT/fold0.. with the split column re-assigned",
        description=(
            "Write OUT/fold0 .. fold{K-1}: each the rows of DIR with the same index values and the "
            "split column re-assigned (test = fold k's groups, val = --val-fraction of the rest), "
            "the assignment `synmed evaluate segment data.folds=K` uses."
        ),
    )
    p.add_argument("dir", type=Path, help="a shard set with a group column")
    p.add_argument("--folds", required=True, type=int, help="K (seed 002: 3)")
    p.add_argument("--out", required=True, type=Path, help="the folder of fold sets to create")
    p.add_argument(
        "--val-fraction", type=float, default=0.2, help="share of non-test groups for val"
    )
    p.add_argument(
        "--shuffle-seed", type=int, help="shuffle groups before KFold (default: sorted order)"
    )
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_data_folds)
    p = data.add_parser(
        "demo", help="list the demo:NAME sources (real data shipped in installed packages)"
    )
    p.set_defaults(func=cmd_data_demo)
    return group


def _add_augment_parser(data: argparse._SubParsersAction) -> None:
    from suite.data.augmented_set import ConventionalAugment

    d = ConventionalAugment()
    p = data.add_parser(
        "augment",
        help="augmented copies of a class's training images, as a labelled set (seed 004)",
        description=(
            "Write COPIES randomly flipped, rotated, shifted, zoomed and intensity-jittered copies "
            "of each --split image of --classes (default: the rarest class), labelled as the "
            "image they copy: the '+ conventional augmentation' set of seed 004, added to a "
            "classifier's training split as `synmed evaluate classify data.synthetic.shards=OUT`."
        ),
    )
    p.add_argument("dir", type=Path, help="a labelled shard set with splits")
    p.add_argument("--out", required=True, type=Path, help="the augmented set to create")
    p.add_argument("--classes", nargs="+", default=[], help="class names (default: the rarest)")
    p.add_argument("--split", choices=("train", "val", "test"), default=d.split)
    p.add_argument("--copies", type=int, default=d.copies, help="copies of each image")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-hflip", action="store_true", help="no horizontal flips (chest X-rays)")
    p.add_argument("--degrees", type=float, default=d.degrees, help="rotation range, +-degrees")
    p.add_argument("--translate", type=float, default=d.translate, help="shift, image fraction")
    p.add_argument("--scale", type=float, default=d.scale, help="zoom in [1-s, 1+s]")
    p.add_argument("--brightness", type=float, default=d.brightness, help="factor in [1-b, 1+b]")
    p.add_argument("--contrast", type=float, default=d.contrast, help="factor in [1-c, 1+c]")
    p.add_argument("--shard-size", type=int, default=1000)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_data_augment)


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
    from suite.data.demo import resolve_source
    from suite.data.info import describe, format_info
    from suite.data.ingest.options import IngestOptions
    from suite.data.ingest.pipeline import ingest
    from suite.schema import DataConfig, load_config

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


def cmd_data_edges(args: argparse.Namespace) -> int:
    from suite.data.edges import CannySettings, write_edge_set

    canny = CannySettings(args.canny_sigma, args.canny_low, args.canny_high)
    manifest = write_edge_set(
        args.dir,
        args.out,
        canny=canny,
        hed=args.hed,
        shard_size=args.shard_size,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    print(f"wrote {manifest.count} edge maps of {args.dir} to {args.out}")
    return 0


def cmd_data_augment(args: argparse.Namespace) -> int:
    from suite.config import from_dict
    from suite.data.augmented_set import ConventionalAugment, write_augmented_set

    options = from_dict(
        ConventionalAugment,
        {
            "classes": args.classes, "split": args.split, "copies": args.copies,
            "hflip": not args.no_hflip, "degrees": args.degrees, "translate": args.translate,
            "scale": args.scale, "brightness": args.brightness, "contrast": args.contrast,
        },
        source="synmed data augment",
    )  # fmt: skip
    written = write_augmented_set(
        args.dir, args.out, options, args.seed, shard_size=args.shard_size, overwrite=args.overwrite
    )
    print(
        f"wrote {written['rows']} augmented copies of {', '.join(written['classes'])} to {args.out}"
    )
    return 0


def cmd_data_folds(args: argparse.Namespace) -> int:
    from suite.data.folds import fold_name, write_fold_sets

    body = write_fold_sets(
        args.dir,
        args.out,
        folds=args.folds,
        val_fraction=args.val_fraction,
        shuffle_seed=args.shuffle_seed,
        overwrite=args.overwrite,
    )
    for k, fold in enumerate(body["per_fold"]):
        sizes = ", ".join(f"{name} {fold[name]['count']}" for name in fold)
        print(f"{fold_name(k)}: {sizes}")
    print(f"wrote {args.folds} fold sets to {args.out}")
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
