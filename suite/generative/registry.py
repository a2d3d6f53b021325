"""model.kind -> generator class. Adding a generator: its file, its config, and one line here."""

from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path
from typing import Any

from suite.data.shards import atomic_write_text, sha256_file
from suite.errors import DataError
from suite.generative.base import Generator

DIGESTS = "digests.json"
# Which file in an export folder names the model kind.
_KIND_FILES = {"config.json": "ddpm_lucidrains", "synmed.json": "ddpm_diffusers"}

GENERATORS: dict[str, str] = {
    "ddpm_lucidrains": "suite.generative.ddpm_lucidrains:LucidrainsDDPM",
    "ddpm_diffusers": "suite.generative.ddpm_diffusers:DiffusersDDPM",
}


def generator_class(kind: str) -> type[Generator]:
    module, _, name = GENERATORS[kind].partition(":")
    return getattr(importlib.import_module(module), name)


def build_generator(config: Any) -> Generator:
    return generator_class(config.kind)(config)


def export_generator(model: Generator, directory: Path, provenance: dict[str, Any]) -> str:
    """Export ``model`` to ``directory`` (replacing an older export) with a sha256 per file in
    digests.json; returns the export's digest (of digests.json), its identity for sampling."""
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.export(tmp, provenance)
    digests = {
        str(p.relative_to(tmp)): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()
    }
    atomic_write_text(tmp / DIGESTS, json.dumps(digests, indent=1, sort_keys=True))
    shutil.rmtree(directory, ignore_errors=True)
    tmp.rename(directory)
    return sha256_file(directory / DIGESTS)


def load_generator(path: Path) -> tuple[Generator, str]:
    """Load an exported generator (a run folder or its export/ folder), checking every file against
    digests.json first. Returns the model and the export's digest."""
    path = Path(path)
    if (path / "export").is_dir():
        path = path / "export"
    if not (path / DIGESTS).is_file():
        raise DataError(
            f"{path} is not a synmed generator export (no {DIGESTS})",
            "pass a run folder of `synmed train generator` (or its export/ folder)",
        )
    digests = json.loads((path / DIGESTS).read_text())
    for name, digest in digests.items():
        if not (path / name).is_file() or sha256_file(path / name) != digest:
            raise DataError(
                f"{path / name} is missing or does not match {DIGESTS}", "re-export the model"
            )
    kind = next((k for f, k in _KIND_FILES.items() if (path / f).is_file()), None)
    if kind is None:
        raise DataError(f"{path}: cannot tell the generator kind", "re-export the model")
    model = generator_class(kind).load_exported(path)
    provenance = json.loads(
        (path / next(f for f, k in _KIND_FILES.items() if k == kind)).read_text()
    )
    model._class_names = list(provenance.get("provenance", {}).get("class_names", []))
    return model, sha256_file(path / DIGESTS)
