"""`synmed cluster`: features, k-means and representatives for a shard set (seed 004's stage).

suite/cli.py wires it with two lines: ``from suite.features.cli import add_cluster_parser`` and
``add_cluster_parser(groups)``. Heavy imports (torch, Ray, sklearn) happen only when it runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_cluster_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``cluster`` command to the top-level ``synmed`` subparsers."""
    p = subparsers.add_parser(
        "cluster",
        help="encode a shard set, k-means the features, pick representatives (Ray Data)",
        description=(
            "Encode every image of --shards with --encoder in a Ray actor pool, cluster the "
            "L2-normalised features with k-means (cosine geometry), and write --out: the input "
            "rows plus `features` and `cluster` columns, clusters.json (per-cluster stats and the "
            "N images nearest each centroid), representatives.png, embedding.png and "
            "cluster_summary.json."
        ),
    )
    p.add_argument("--shards", required=True, type=Path, help="the input shard set")
    p.add_argument(
        "--encoder",
        required=True,
        metavar="ENC",
        help="inception (FID Inception-v3, 2048-d), efficientnet_lite0[:PATH] (ImageNet "
        "EfficientNet-Lite0, 1280-d), clip:PATH (a local transformers or open_clip CLIP folder), "
        "random[:SIZE] (seeded random ResNet-18, 512-d baseline) or ssl:PATH (a backbone export "
        "of synmed pretrain)",
    )
    p.add_argument("--k", type=int, default=5, help="number of clusters (seed 004: 5)")
    p.add_argument(
        "--representatives",
        type=int,
        default=25,
        metavar="N",
        help="images kept per cluster, nearest the centroid (seed 004: 25)",
    )
    p.add_argument(
        "--classes",
        type=lambda text: [c for c in text.split(",") if c],
        metavar="A,B",
        help="cluster only rows of these classes (seed 004: the class it doubles); the others "
        "get cluster -1",
    )
    p.add_argument(
        "--split", choices=("train", "val", "test"), help="cluster only rows of this split"
    )
    p.add_argument(
        "--keep-min-mean",
        type=float,
        metavar="COS",
        help="keep clusters whose representatives' mean pairwise cosine is at least COS",
    )
    p.add_argument(
        "--keep-max-std",
        type=float,
        metavar="STD",
        help="keep clusters whose representatives' pairwise cosine std is at most STD",
    )
    p.add_argument(
        "--keep-top", type=int, metavar="N", help="keep the N clusters with the highest mean"
    )
    p.add_argument(
        "--workers", type=int, default=1, help="encoder actors (one per GPU; CPU share otherwise)"
    )
    p.add_argument(
        "--ray-address", help="join this Ray cluster (default: RAY_ADDRESS, else a local Ray)"
    )
    p.add_argument("--batch-size", type=int, default=64, help="images per encoder forward pass")
    p.add_argument("--seed", type=int, default=0, help="k-means initialisation seed")
    p.add_argument(
        "--embedding", choices=("pca", "tsne"), default="pca", help="the 2D map in embedding.png"
    )
    p.add_argument(
        "--memory-budget-gb",
        type=float,
        default=2.0,
        help="features larger than this use MiniBatchKMeans instead of KMeans",
    )
    p.add_argument("--out", required=True, type=Path, help="the clustered shard set to create")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=cluster_command)
    return p


def cluster_command(args: argparse.Namespace) -> int:
    """Run the stage and print a one-screen summary."""
    from suite.features.cluster import KeepRule, cluster_shard_set

    keep = KeepRule(
        min_pairwise_mean=getattr(args, "keep_min_mean", None),
        max_pairwise_std=getattr(args, "keep_max_std", None),
        top=getattr(args, "keep_top", None),
    )
    summary = cluster_shard_set(
        args.shards,
        args.out,
        args.encoder,
        args.k,
        representatives=args.representatives,
        workers=args.workers,
        batch_size=args.batch_size,
        seed=args.seed,
        embedding=args.embedding,
        ray_address=args.ray_address,
        memory_budget_gb=getattr(args, "memory_budget_gb", 2.0),
        classes=getattr(args, "classes", None),
        split=getattr(args, "split", None),
        keep=keep,
        overwrite=getattr(args, "overwrite", False),
    )
    print(format_summary(summary))
    return 0


def format_summary(summary: dict[str, Any]) -> str:
    out = Path(summary["out"])
    ex = summary["extraction"]
    enc = summary["encoder"]
    sizes = summary["cluster_sizes"]
    lines = [
        f"clustered {summary['images']} images of {summary['shards']}",
        f"  encoder    {enc['spec']} ({enc['dim']}-d, {enc['image_size']} px)",
        f"  extraction {ex['seconds']:.1f} s, {ex['images_per_s']:.1f} images/s "
        f"({ex['workers']} worker(s), {ex['images_per_s_per_worker']:.1f} images/s each while encoding)",
        f"  k-means    k={summary['k']} ({summary['algorithm']}, seed {summary['seed']}, "
        f"cosine), {summary['cluster_seconds']:.1f} s",
        "  clusters   "
        + ", ".join(
            f"{c}: {n}" + (f" (cos {m:.3f})" if m is not None else "")
            for c, (n, m) in enumerate(zip(sizes, summary["mean_cosine"]))
        ),
        f"  kept       {', '.join(map(str, summary['kept']))}"
        + (
            f" ({summary['clustered']} of {summary['images']} rows clustered)"
            if summary["clustered"] != summary["images"]
            else ""
        ),
        f"  shard set  {out} ({summary['output_shards']} shard(s), with features and cluster)",
        f"  stats      {out / summary['files']['clusters_json']}",
        f"  plots      {out / 'representatives.png'}, {out / 'embedding.png'}",
        f"  summary    {out / summary['files']['summary_json']}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m suite.features.cli --shards ...``: the command stand-alone, with the same error
    handling as ``synmed`` (one message and its fix, exit status 2)."""
    import sys

    from suite.errors import SynmedError

    parser = argparse.ArgumentParser(prog="synmed")
    add_cluster_parser(parser.add_subparsers(dest="group", required=True))
    args = parser.parse_args(["cluster", *(sys.argv[1:] if argv is None else argv)])
    try:
        return cluster_command(args)
    except SynmedError as err:
        print(f"error: {err.what}", file=sys.stderr)
        if err.fix:
            print(f"  fix: {err.fix}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
