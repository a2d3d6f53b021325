"""`synmed evaluate generator`: the argparse wiring; the work is :mod:`suite.evaluation.generator.job`.

Heavy imports (torch, Ray, scipy) happen only when the command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``generator`` to the ``synmed evaluate`` subcommands."""
    p = subparsers.add_parser(
        "generator",
        help="FID, FD on other encoders, KID, precision/recall, density/coverage (Ray)",
        description=(
            "Score the synthetic shard set --fake against the real shard set --real: FID "
            "(standard Inception-v3), the Fréchet distance on every other --encoder (FD_<name>), "
            "KID, precision/recall (k=3) and density/coverage (k=5) on the first encoder, and "
            "per-class FID when both sets are labelled. Statistics are computed per shard in a "
            "Ray actor pool and merged exactly; the real set's are cached by digest. Writes "
            "--out/result.json and --out/metrics.csv."
        ),
    )
    p.add_argument("--real", required=True, type=Path, help="the real (reference) shard set")
    p.add_argument("--fake", required=True, type=Path, help="the synthetic shard set to score")
    p.add_argument(
        "--encoder",
        action="append",
        metavar="ENC",
        help="inception (FID, the default), inception:768 (its Mixed_6e features), random[:SIZE] "
        "or ssl:PATH; repeat for several. "
        "KID and PRDC use the first one",
    )
    p.add_argument(
        "--real-split", choices=("train", "val", "test"), help="use only this split of --real"
    )
    p.add_argument(
        "--workers", type=int, default=1, help="encoder actors (one per GPU; CPU share otherwise)"
    )
    p.add_argument(
        "--ray-address", help="join this Ray cluster (default: RAY_ADDRESS, else a local Ray)"
    )
    p.add_argument("--batch-size", type=int, default=64, help="images per encoder forward pass")
    p.add_argument(
        "--cache-dir",
        type=Path,
        help="reference statistics cache (default: $SYNMED_CACHE/stats, else ~/.cache/synmed/stats)",
    )
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    p.add_argument(
        "--max-samples",
        type=int,
        default=10_000,
        help="features per set kept for KID and PRDC (a seeded subsample beyond this)",
    )
    p.add_argument("--kid-subsets", type=int, default=100, help="KID subsets (Bińkowski: 100)")
    p.add_argument(
        "--kid-subset-size", type=int, default=1000, help="KID subset size (Bińkowski: 1000)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the subsample and KID subsets")
    p.add_argument("--out", required=True, type=Path, help="the result folder to create")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=generator_command)
    return p


def generator_command(args: argparse.Namespace) -> int:
    """Run the evaluation and print the scores."""
    from suite.evaluation.generator.job import GeneratorEvalOptions, evaluate_generator

    options = GeneratorEvalOptions(
        encoders=tuple(args.encoder or ("inception",)),
        real_split=args.real_split,
        workers=args.workers,
        batch_size=args.batch_size,
        ray_address=args.ray_address,
        cache_dir=args.cache_dir,
        use_cache=not args.no_cache,
        max_samples=args.max_samples,
        kid_subsets=args.kid_subsets,
        kid_subset_size=args.kid_subset_size,
        seed=args.seed,
        overwrite=args.overwrite,
    )
    result = evaluate_generator(args.real, args.fake, args.out, options)
    print(format_summary(result, args.out))
    return 0


def format_summary(result: dict[str, Any], out: Path) -> str:
    ctx = result["context"]
    lines = [
        f"scored {ctx['n_fake']} fake images ({ctx['fake']}) against {ctx['n_real']} real "
        f"({ctx['real']}{', split ' + ctx['split'] if ctx['split'] else ''})",
    ]
    for name, value in result["metrics"].items():
        lines.append(f"  {name:<13} {'n/a' if value is None else f'{value:.6g}'}")
    for cls, entry in result["per_class"].items():
        scores = ", ".join(f"{k} {'n/a' if v is None else f'{v:.4g}'}" for k, v in entry.items())
        lines.append(f"  class {cls}: {scores}")
    hits = [e for e in ctx["cache"]["entries"] if e["hit"]]
    lines.append(f"  reference stats: {len(hits)} of {len(ctx['cache']['entries'])} from cache")
    lines.append(f"  result     {Path(out) / 'result.json'} (and metrics.csv)")
    return "\n".join(lines)
