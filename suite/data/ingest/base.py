"""What every ingest adapter yields, and the interface it implements.

An adapter only *reads* a source format. Resizing, intensity scaling, channel conversion, split
assignment and shard writing are done once, for all formats, by :mod:`suite.data.ingest.pipeline`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

from suite.data.ingest.options import IngestOptions
from suite.errors import DataError

LabelKind = Literal["none", "multiclass", "multilabel"]
Intensity = Literal["raw", "unit"]


@dataclass(slots=True)
class Record:
    """One 2D image read from a source, before preprocessing.

    Attributes:
        image: (H, W) or (H, W, C) array. uint8 or ``intensity="unit"`` values are final; any other
            dtype is scaled to uint8 by percentile clipping.
        source: Where it came from (file path, plus ``#frame`` or ``#slice``) for errors and provenance.
        label: Class id (multiclass), multi-hot (K,) uint8 (multilabel), or None (unlabelled).
        mask: Optional (H, W) integer segmentation mask, same size as ``image``.
        group: Patient or volume id. Splits never cut a group.
        split: The split the source assigns ("train", "val" or "test"), or None to compute one.
        position: Slice position along the slicing axis, for slab splits of a single volume.
        intensity: "unit" when the adapter already mapped intensities to [0, 1] (DICOM windowing).
    """

    image: np.ndarray
    source: str
    label: int | np.ndarray | None = None
    mask: np.ndarray | None = None
    group: str | None = None
    split: str | None = None
    position: float | None = None
    intensity: Intensity = "raw"


@dataclass(slots=True)
class SourceInfo:
    """What an adapter knows about a source before reading its images."""

    class_names: list[str]
    label_kind: LabelKind
    mask_names: list[str] = field(default_factory=list)  # e.g. ["background", "gm", "wm"]
    expected_count: int | None = None  # for progress bars; None when unknown
    split_policy: Literal["given", "group", "slab", "random"] = "random"
    description: str = ""


class SourceAdapter:
    """Base class of a source format. Subclasses set ``name`` and implement two methods.

    The constructor must fail fast (a :class:`~suite.errors.DataError` naming the file and the fix)
    on anything it can check without decoding images: a missing file, an empty folder, a CSV missing
    a column, a label outside the class list.
    """

    name: ClassVar[str]

    def __init__(self, source: Path, options: IngestOptions) -> None:
        self.source = source
        self.options = options

    def info(self) -> SourceInfo:
        raise NotImplementedError

    def records(self) -> Iterator[Record]:
        """Yield records one by one; raise DataError naming the file on a corrupt one."""
        raise NotImplementedError

    @classmethod
    def sniff(cls, source: Path) -> bool:
        """True when ``source`` looks like this format (used by ``--format auto``)."""
        return False


def check_class_names(names: list[str], origin: str) -> None:
    """Refuse a class name that could act as a path: separators, ``..``, a leading dot, empty.

    For names that name folders (class-folder sources) or come from a labels file; ``../x`` would
    read outside the root. Names from a format's own table are not paths and are not checked
    (Fashion-MNIST has "T-shirt/top").
    """
    for name in names:
        text = str(name)
        if (
            not text
            or "/" in text
            or "\\" in text
            or "\0" in text
            or ".." in text
            or text.startswith(".")
        ):
            raise DataError(
                f"class name {text!r} in {origin} is not a plain name (it has a path separator, "
                "'..' or a leading '.', or is empty)",
                "rename the class (letters, digits, '_', '-', spaces), e.g. in --class-names or "
                "the labels file",
            )


def inside(root: Path, path: Path, what: str) -> Path:
    """``path`` (built from a name in the source) refused, naming ``what``, when it leaves ``root``.

    The check is on the path as written (``..`` and absolute parts), so a symlinked file of a
    symlink farm stays readable; folders that are links are checked where they are listed.
    """
    top = Path(os.path.normpath(os.path.abspath(root)))
    full = Path(os.path.normpath(os.path.abspath(path)))
    if full != top and top not in full.parents:
        raise DataError(
            f"{what} {path} leads outside {root}",
            f"fix the name so that it stays below {root} (no '..', no absolute path)",
        )
    return path
