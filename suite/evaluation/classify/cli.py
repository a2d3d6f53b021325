"""``synmed evaluate classify CONFIG``, ``synmed evaluate self-validate`` and
``synmed evaluate self-validate-sweep``.

suite/evaluation/cli.py adds all three with one call, ``add_parser(subparsers)``. Heavy imports (torch,
sklearn) happen only when a command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``classify``, ``self-validate`` and ``self-validate-sweep`` to the ``evaluate``
    subcommands."""
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

    p = subparsers.add_parser(
        "self-validate-sweep",
        help="self-validation of every saved checkpoint of a generator run (F1 against step)",
        description=(
            "Sample --per-class images per class from each saved checkpoint of RUN (its EMA "
            "weights) into OUT/samples/step-N/, classify them with --classifier, and write one "
            "result (per-step per-class precision, recall and F1; micro and macro) to "
            "OUT/result.json. A rerun of the same command resumes."
        ),
    )
    p.add_argument("--run", required=True, type=Path, help="a `synmed train generator` run folder")
    p.add_argument("--classifier", required=True, type=Path, help="classifier.safetensors + json")
    p.add_argument("--per-class", required=True, type=int, help="images per class and step")
    p.add_argument("--out", required=True, type=Path, help="the sweep folder")
    p.add_argument("--steps", help="comma-separated saved steps (default: every saved one)")
    p.add_argument("--sampler", help="one the generator family declares (default: its first)")
    p.add_argument("--sampling-steps", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sample-batch-size", type=int, default=32, help="images per model call")
    p.add_argument("--batch-size", type=int, default=128, help="images per classifier call")
    p.add_argument("--workers", type=int, default=1, help="sampling actors")
    p.add_argument(
        "--ray-address", help="join this Ray cluster (default: $RAY_ADDRESS or a local Ray)"
    )
    p.set_defaults(func=self_validate_sweep_command)


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


def self_validate_sweep_command(args: argparse.Namespace) -> int:
    from suite.evaluation.classify.sweep import self_validate_sweep

    result = self_validate_sweep(
        args.run, args.classifier, args.out, per_class=args.per_class,
        steps=parse_steps(args.steps), sampler=args.sampler, sampling_steps=args.sampling_steps,
        seed=args.seed, sample_batch_size=args.sample_batch_size, batch_size=args.batch_size,
        workers=args.workers, ray_address=args.ray_address,
    )  # fmt: skip
    print(format_result(result))
    return 0


def parse_steps(text: str | None) -> list[int] | None:
    """``--steps 100,200`` as integers; anything else is one error naming the value."""
    if text is None:
        return None
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        from suite.errors import ConfigError

        raise ConfigError(
            f"--steps {text!r} is not a comma-separated list of steps", "pass e.g. --steps 100,200"
        ) from None


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
