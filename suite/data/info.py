"""`synmed data info`: what a shard set holds, as text for people or JSON for scripts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py

from suite.data.shards import SPLITS, read_manifest


def describe(directory: Path) -> dict[str, Any]:
    manifest = read_manifest(directory)
    shape = None
    columns: list[str] = []
    if manifest.shards:
        with h5py.File(Path(directory) / manifest.shards[0].file, "r") as h5:
            shape = list(h5["images"].shape[1:])
            columns = sorted(h5.keys())
    bytes_on_disk = sum(
        (Path(directory) / s.file).stat().st_size
        for s in manifest.shards
        if (Path(directory) / s.file).exists()
    )
    return {
        "directory": str(directory),
        "count": manifest.count,
        "shards": len(manifest.shards),
        "image_shape": shape,
        "columns": columns,
        "source": manifest.attrs.get("source"),
        "format": manifest.attrs.get("format"),
        "label_kind": manifest.attrs.get("label_kind", "none"),
        "class_counts": dict(zip(manifest.class_names, manifest.class_counts())),
        "split_counts": {k: manifest.split_counts().get(k, 0) for k in SPLITS}
        if manifest.split_counts()
        else {},
        "mask_names": manifest.attrs.get("mask_names", []),
        "bytes": bytes_on_disk,
        "attrs": manifest.attrs,
    }


def format_info(info: dict[str, Any]) -> str:
    lines = [
        f"shard set   {info['directory']}",
        f"images      {info['count']} in {info['shards']} shard(s), shape {info['image_shape']} uint8, "
        f"{info['bytes'] / 2**20:.1f} MiB",
        f"columns     {', '.join(info['columns'])}",
        f"source      {info['source']} ({info['format'] or 'written by a stage'})",
    ]
    if info["split_counts"]:
        lines.append(
            "splits      " + ", ".join(f"{k} {v}" for k, v in info["split_counts"].items())
        )
    if info["class_counts"]:
        kind = "positives per class" if info["label_kind"] == "multilabel" else "per class"
        lines.append(f"labels      {info['label_kind']}, {kind}:")
        width = max(len(n) for n in info["class_counts"])
        lines += [f"  {name:<{width}}  {count}" for name, count in info["class_counts"].items()]
    if info["mask_names"]:
        lines.append(f"masks       {', '.join(info['mask_names'])}")
    return "\n".join(lines)


def info_json(directory: Path) -> str:
    return json.dumps(describe(directory), indent=1)
