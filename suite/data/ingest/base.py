"""What every ingest adapter yields, and the interface it implements.

An adapter only *reads* a source format. Resizing, intensity scaling, channel conversion, split
assignment and shard writing are done once, for all formats, by :mod:`suite.data.ingest.pipeline`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

from suite.data.ingest.options import IngestOptions

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
