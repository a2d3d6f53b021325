"""``synmed evaluate classify CONFIG`` and ``synmed evaluate self-validate``.

suite/evaluation/cli.py adds both with one call, ``add_parser(subparsers)``. Heavy imports (torch,
sklearn) happen only when a command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``classify`` and ``self-validate`` to the ``evaluate`` subcommands."""
    p = subparsers.add_parser(
        "classify",
        help="linear probe, kNN, fine-tuning and shallow heads on a labelled shard set",
        description=(
            "Evaluate a backbone (an SSL export, random init, or ImageNet weights) on a labelled "
            "shard set with the protocols in CONFIG (configs/evaluate/classify_*.yaml), over "
            "several seeds; writes result.json and CSV tables to run.out_dir/run.name (or --out)."
        ),
    )
    p.add_argument(
        "config", help="a YAML config, e.g. configs/evaluate/classify_fashion_mnist.yaml"
    )
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. backbone.kind=random")
    p.add_argument("--out", type=Path, help="the result folder (default: run.out_dir/run.name)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing result folder")
    p.set_defaults(func=classify_command)

    p = subparsers.add_parser(
        "self-validate",
        help="a classifier trained on real images predicts the intended class of generated ones",
        description=(
            "Seed 004's self-validation: the fine-tuned classifier (a finetune/seed-N folder of "
            "`synmed evaluate classify`) classifies every image of --fake; per-class precision, "
            "recall and F1 against the intended classes, micro and macro apart."
        ),
    )
    p.add_argument("--classifier", required=True, type=Path, help="classifier.safetensors + json")
    p.add_argument("--fake", required=True, type=Path, help="the generated, labelled shard set")
    p.add_argument("--out", required=True, type=Path, help="the result folder to create")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=self_validate_command)


def classify_command(args: argparse.Namespace) -> int:
    from suite.config import load_config
    from suite.evaluation.classify.config import ClassifyConfig
    from suite.evaluation.classify.run import run_classify

    cfg = load_config(args.config, args.overrides, schema=ClassifyConfig)
    result = run_classify(cfg, args.out, overwrite=args.overwrite)
    print(format_result(result))
    return 0


def self_validate_command(args: argparse.Namespace) -> int:
    from suite.evaluation.classify.self_validation import self_validate

    result = self_validate(
        args.classifier, args.fake, args.out, batch_size=args.batch_size, overwrite=args.overwrite
    )
    print(format_result(result))
    return 0


def format_result(result: dict[str, Any]) -> str:
    """The headline metrics, one line per protocol: mean ± std over seeds."""
    headline = ("accuracy", "f1_macro", "f1_micro", "auc_ovr_macro", "auc_macro")
    lines = [f"{result['task']}:"]
    by_protocol: dict[str, list[str]] = {}
    for key, s in result["metrics"].items():
        protocol, name = key.split(".", 1)
        if name in headline and s["mean"] is not None:
            by_protocol.setdefault(protocol, []).append(f"{name} {s['mean']:.4f} ± {s['std']:.4f}")
    for protocol, parts in by_protocol.items():
        lines.append(f"  {protocol:<16} " + ", ".join(parts))
    return "\n".join(lines)
