"""The registry of source formats: one line per adapter, imported only when used.

Adding a format is one module with a :class:`~suite.data.ingest.base.SourceAdapter` subclass and one
line here (``data.format`` accepts every name listed, plus ``auto``). Order matters for
``--format auto``: the first adapter whose ``sniff`` accepts wins, so specific layouts come before
the generic class-folder one. This module is torch- and numpy-free: config loading reads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from suite.errors import DataError
from suite.registry import Registry

if TYPE_CHECKING:
    from suite.data.ingest.base import SourceAdapter

ADAPTERS: Registry[type[SourceAdapter]] = Registry(
    "format",
    {
        "nifti": "suite.data.ingest.nifti:NiftiAdapter",
        "medmnist": "suite.data.ingest.medmnist:MedMNISTAdapter",
        "idx": "suite.data.ingest.idx:IDXAdapter",
        "nih": "suite.data.ingest.nih:NIHAdapter",
        "covidx": "suite.data.ingest.covidx:COVIDxAdapter",
        "dicom": "suite.data.ingest.dicom:DicomAdapter",
        "image_masks": "suite.data.ingest.image_masks:ImageMasksAdapter",
        "folder": "suite.data.ingest.folder:FolderAdapter",
    },
)


def load_adapter(name: str) -> type[SourceAdapter]:
    if name not in ADAPTERS:
        raise DataError(f"unknown format {name!r}", f"use one of: auto, {', '.join(ADAPTERS)}")
    return ADAPTERS.get(name)


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
