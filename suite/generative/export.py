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
