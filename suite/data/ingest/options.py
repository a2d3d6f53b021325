"""Typed options of `synmed data ingest`, shared by every adapter and by the `data:` config section."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from suite.config import (
    Fraction,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    PositiveSum,
    Range,
    RegistryName,
    added_field,
)
from suite.data.ingest.adapters import ADAPTERS

# "auto" or a name of suite/data/ingest/adapters.py (checked on load: one list of formats)
FormatName = Annotated[str, RegistryName(ADAPTERS, extra=("auto",))]
Percent = Annotated[float, Range(ge=0, le=100)]


@dataclass(kw_only=True, slots=True)
class IngestOptions:
    """How a source is read and turned into uint8 shards.

    Defaults keep images as they are; everything that changes pixels is opt-in and recorded in the
    shard attributes.
    """

    format: FormatName = "auto"
    # Output geometry. None keeps the source size, which then must be the same for every image.
    image_size: PositiveInt | None = None
    # pad: keep the aspect ratio and pad (letterbox); crop: fill and center-crop; stretch: ignore it.
    aspect: Literal["pad", "crop", "stretch"] = "pad"
    channels: Literal[1, 3] = 1
    # Intensity clipping for non-uint8 sources (DICOM, NIfTI, 16-bit PNG), then scaled to 0..255.
    clip_percentiles: tuple[Percent, Percent] = (0.5, 99.5)
    # CT: the lower clipping bound is at least this (HU), so air (-1000) does not take up the
    # range; DiffBoost uses -256 for spleen CT. Applies where percentiles clip (not DICOM windows).
    hu_floor: float | None = added_field(None)
    # Class order fixes label ids. None: the source's own order (sorted folder names, known lists).
    class_names: list[str] | None = None
    # train / val / test. Sources with official splits (MedMNIST, NIH lists, COVIDx, IDX) keep them
    # and carve only what is missing (val) out of train.
    split_fractions: Annotated[
        tuple[NonNegativeFloat, NonNegativeFloat, NonNegativeFloat], PositiveSum()
    ] = (0.8, 0.1, 0.1)
    seed: int = 0
    shard_size: PositiveInt = 2048
    compression: Literal["lzf", "gzip", "none"] = "lzf"
    limit: PositiveInt | None = None  # read at most this many records (quick looks at huge sources)
    # DICOM: "file" uses the file's VOI LUT / WindowCenter+WindowWidth when present, else percentiles.
    dicom_window: Literal["file", "none"] = "file"
    window_center: float | None = None  # both set: a manual window that overrides the file's
    window_width: PositiveFloat | None = None
    # NIfTI: masks are one integer label volume or several probability maps (one class each);
    # mask_threshold also binarises image_masks PNG masks (a fraction of the full scale).
    mask: list[Path] = field(default_factory=list, metadata={"must_exist": True})
    mask_names: list[str] | None = None
    mask_threshold: float = 0.5
    # image_masks folders: an image without a mask file is an error, or gets an empty mask
    missing_masks: Literal["error", "empty"] = added_field("error")
    # 4D NIfTI images (several modalities in one file): the volume to slice, e.g. 0 for MSD
    # Task05 prostate's T2 (1 is ADC); None refuses 4D files
    nifti_volume: NonNegativeInt | None = added_field(None)
    axis: Literal[0, 1, 2] = 2
    # Slice along all three axes instead, each slice labelled by its plane (sagittal, coronal,
    # axial): a real label for classification on an unlabelled volume; splits stay per plane slab.
    plane_labels: bool = False
    min_foreground: Fraction = 0.05  # NIfTI: keep slices whose foreground fraction is at least this
    # any source with masks: keep rows whose mask has at least this many pixels > 0, counted at
    # the stored size (after --image-size); DiffBoost keeps slices with more than 20 (here 21)
    min_mask_pixels: NonNegativeInt = added_field(0)
    # NIH ChestX-ray14 / COVIDx: where the image files are; None searches below the source folder.
    images_dir: Path | None = field(default=None, metadata={"must_exist": True})
