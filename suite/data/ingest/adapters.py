"""The registry of source formats: one line per adapter, imported only when used.

Adding a format is one module with a :class:`~suite.data.ingest.base.SourceAdapter` subclass and one
line here. Order matters for ``--format auto``: the first adapter whose ``sniff`` accepts wins, so
specific layouts come before the generic class-folder one.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from suite.data.ingest.base import SourceAdapter
from suite.errors import DataError

ADAPTERS: dict[str, str] = {
    "nifti": "suite.data.ingest.nifti:NiftiAdapter",
    "medmnist": "suite.data.ingest.medmnist:MedMNISTAdapter",
    "idx": "suite.data.ingest.idx:IDXAdapter",
    "nih": "suite.data.ingest.nih:NIHAdapter",
    "covidx": "suite.data.ingest.covidx:COVIDxAdapter",
    "dicom": "suite.data.ingest.dicom:DicomAdapter",
    "folder": "suite.data.ingest.folder:FolderAdapter",
}


def load_adapter(name: str) -> type[SourceAdapter]:
    if name not in ADAPTERS:
        raise DataError(f"unknown format {name!r}", f"use one of: auto, {', '.join(ADAPTERS)}")
    module, _, cls = ADAPTERS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def resolve_adapter(source: Path, fmt: str) -> type[SourceAdapter]:
    """The adapter for ``fmt``, or the first that recognises ``source`` when ``fmt`` is "auto"."""
    if fmt != "auto":
        return load_adapter(fmt)
    for name in ADAPTERS:
        adapter = load_adapter(name)
        if adapter.sniff(source):
            return adapter
    raise DataError(
        f"cannot tell the format of {source}",
        f"pass --format with one of: {', '.join(ADAPTERS)}",
    )
