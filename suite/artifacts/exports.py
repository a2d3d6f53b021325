"""Export folders: what one stage hands the next as a model (a generator, a backbone, a classifier).

An export is a folder of files plus one metadata file, :data:`EXPORT_META`, that names what the
folder is (``kind``: generator, backbone or classifier; ``family``: which registry entry loads it),
its format ``version``, where it came from (``provenance``: config and data digests, run, step) and
the sha256 of every other file in it. Loaders read the kind from that file and check every digest
before they touch a weight; nothing is guessed from file names. A frozen base model that the export
builds on (a local Stable Diffusion folder) is named in ``bases`` by path and digest, never copied.

The export's identity (what a sampling job or an evaluation records) is the sha256 of the metadata
file, which covers every file through its digests.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from suite.artifacts.digests import first_mismatch, sha256_file
from suite.errors import DataError

EXPORT_META = "synmed-export.json"
EXPORT_VERSION = 1
ExportKind = Literal["generator", "backbone", "classifier"]
KINDS: tuple[str, ...] = ("generator", "backbone", "classifier")
# What an export of each kind is made by, for the error that names the fix.
MADE_BY = {
    "generator": "synmed train generator",
    "backbone": "synmed pretrain",
    "classifier": "synmed evaluate classify (fine-tune)",
}


@dataclass(frozen=True, slots=True)
class ExportMeta:
    """The metadata file of an export folder."""

    kind: str
    family: str
    version: int = EXPORT_VERSION
    provenance: dict[str, Any] = field(default_factory=dict)
    # relative path -> sha256 of every file of the export but the metadata file
    files: dict[str, str] = field(default_factory=dict)
    # name -> {"path": ..., "sha256": ...} of frozen inputs the export needs but does not hold
    bases: dict[str, dict[str, str]] = field(default_factory=dict)
    # family-specific settings the loader needs (a model config, class names)
    body: dict[str, Any] = field(default_factory=dict)


def write_export(
    directory: Path,
    *,
    kind: ExportKind,
    family: str,
    write_files: Callable[[Path], None],
    provenance: dict[str, Any],
    body: dict[str, Any] | None = None,
    bases: dict[str, dict[str, str]] | None = None,
) -> str:
    """Build an export in a sibling ``.tmp`` folder (``write_files(tmp)`` writes the weights),
    digest every file, write the metadata file, then move it over ``directory`` (replacing an
    older export). Returns the export's digest."""
    if kind not in KINDS:
        raise ValueError(f"unknown export kind {kind!r}")
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write_files(tmp)
    files = {
        str(p.relative_to(tmp)): sha256_file(p)
        for p in sorted(tmp.rglob("*"))
        if p.is_file() and p.name != EXPORT_META
    }
    meta = ExportMeta(
        kind=kind,
        family=family,
        provenance=provenance,
        files=files,
        bases=bases or {},
        body=body or {},
    )
    (tmp / EXPORT_META).write_text(json.dumps(asdict(meta), indent=1, sort_keys=True))
    old = directory.with_name(directory.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)
    return sha256_file(directory / EXPORT_META)


def export_folder(path: Path) -> Path:
    """A run folder's export/ folder, or ``path`` itself."""
    path = Path(path)
    return path / "export" if (path / "export" / EXPORT_META).is_file() else path


def read_export(
    path: Path, kind: ExportKind, *, verify: bool = True
) -> tuple[Path, ExportMeta, str]:
    """Read and check an export of ``kind`` (a run folder or its export/ folder): the metadata
    file must exist and name ``kind``, and every file must match its digest (``verify``) before
    anything is loaded. Returns (folder, metadata, the export's digest)."""
    folder = export_folder(path)
    meta_path = folder / EXPORT_META
    fix = f"pass the run folder of `{MADE_BY[kind]}` (or its export/ folder), or re-export it"
    if not meta_path.is_file():
        raise DataError(f"{folder} is not a synmed {kind} export (no {EXPORT_META})", fix)
    try:
        raw = json.loads(meta_path.read_text())
        meta = ExportMeta(**raw)
    except (ValueError, TypeError) as e:
        raise DataError(f"{meta_path} is not a valid export metadata file ({e})", fix) from None
    if meta.kind != kind:
        raise DataError(f"{folder} is a {meta.kind} export, not a {kind} export", fix)
    if meta.version > EXPORT_VERSION:
        raise DataError(
            f"{folder} has export version {meta.version}; this synmed reads up to {EXPORT_VERSION}",
            "upgrade synmed-suite",
        )
    if verify:
        bad = first_mismatch(folder, meta.files)
        if bad is not None:
            raise DataError(
                f"{bad} is missing or does not match the digest in {EXPORT_META}",
                "re-export the model (the folder was changed after it was written)",
            )
        for name, base in meta.bases.items():
            check_base(name, Path(base["path"]), base["sha256"])
    return folder, meta, sha256_file(meta_path)


def check_base(name: str, path: Path, digest: str) -> None:
    """A frozen base model named by an export must still be the one it was trained on."""
    from suite.artifacts.digests import sha256_json

    if not path.exists():
        raise DataError(
            f"the {name} base model {path} named by this export does not exist",
            "put the base model back at that path (exports name their base, never copy it)",
        )
    if sha256_json(folder_digests(path)) != digest:
        raise DataError(
            f"the {name} base model at {path} changed since the export was made (digest differs)",
            "restore the original base model, or retrain on the new one",
        )


def folder_digests(path: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under ``path`` (a base model folder's identity)."""
    path = Path(path)
    if path.is_file():
        return {path.name: sha256_file(path)}
    return {
        str(p.relative_to(path)): sha256_file(p) for p in sorted(path.rglob("*")) if p.is_file()
    }
