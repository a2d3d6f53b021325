"""Generator exports: a family's weights plus the metadata file that names the family, its
config, the class names and the digest of every file (suite/artifacts/exports.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from suite.artifacts.digests import sha256_json
from suite.artifacts.exports import folder_digests, read_export, write_export
from suite.config import from_dict
from suite.errors import DataError
from suite.generative.base import Generator
from suite.generative.families import GENERATORS, generator_class


def export_generator(
    model: Generator, directory: Path, provenance: dict[str, Any], class_names: list[str]
) -> str:
    """Export ``model`` to ``directory`` (replacing an older export); returns the export's
    digest, its identity for sampling."""
    bases = {
        name: {"path": str(Path(path).resolve()), "sha256": sha256_json(folder_digests(path))}
        for name, path in model.frozen_bases().items()
    }
    return write_export(
        directory,
        kind="generator",
        family=model.config.kind,
        write_files=model.export_files,
        provenance=provenance,
        body={"model": dataclasses.asdict(model.config), "class_names": list(class_names)},
        bases=bases,
    )


def load_generator(path: Path) -> tuple[Generator, str]:
    """Load an exported generator (a run folder or its export/ folder), checking every file
    against the export's digests first. Returns the model (in eval mode) and the export's
    digest."""
    folder, meta, digest = read_export(path, "generator")
    if meta.family not in GENERATORS:
        raise DataError(
            f"{folder} holds a {meta.family!r} generator, which this synmed does not know",
            f"known families: {', '.join(GENERATORS)}; upgrade synmed-suite",
        )
    cls = generator_class(meta.family)
    config = from_dict(cls.config_class, meta.body["model"], source=str(folder))
    model = cls.load_exported(folder, config)
    model._class_names = list(meta.body.get("class_names", []))
    model._export_folder = str(folder)
    return model.eval(), digest


def export_initial(cfg: Any, out: Path, *, overwrite: bool = False) -> str:
    """Export the generator ``cfg.model`` builds, before any training step, to ``out``.

    A LoRA family's adapters start at zero (peft's ``lora_B``), so its initial export samples
    the base model itself: what DreamBooth's class images are drawn from. Class names come from
    ``data.shards`` when it is set. Returns the export's digest.
    """
    from suite.config import config_digest
    from suite.data.shards import read_manifest
    from suite.errors import ConfigError
    from suite.generative.families import build_generator

    if cfg.model is None:
        raise ConfigError(
            "the config has no model: section",
            f"add a model: section with kind: one of {', '.join(GENERATORS)}",
        )
    out = Path(out)
    if out.exists() and not overwrite:
        raise ConfigError(f"--out {out} already exists", "pass a new --out, or --overwrite")
    names = list(read_manifest(Path(cfg.data.shards)).class_names) if cfg.data.shards else []
    classes = getattr(cfg.model, "num_classes", 0)  # unconditional families have no such field
    if classes and len(names) != classes:
        raise ConfigError(
            f"model.num_classes={classes} needs the class names of data.shards "
            f"({len(names)} there)",
            "set data.shards to the shard set the classes come from, or model.num_classes: 0",
        )
    model = build_generator(cfg.model)
    model.bind_data(names, list(range(len(names))))
    provenance = {"weights": "initial", "steps": 0, "config_sha256": config_digest(cfg)}
    with model.in_eval():
        return export_generator(model, out, provenance, class_names=names)
